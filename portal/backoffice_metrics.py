"""Reads for the back office's revenue metrics page (issue 20): the stored monthly aggregates, shaped for display.

Everything comes from `billing.services.revenue_metrics.metrics_summary`, which reads only the stored aggregates
(RevenueMonth, RevenueCustomerMonth, BillingQualityMonth), so the page's query count does not grow with the number
of customers (tests/admin/test_staff_metrics.py pins it at two sizes). The reconciliation of fact-based MRR against
invoices is computed from invoices and subscriptions, so it has its own page (`reconciliation_rows`).
"""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.conf import settings

from billing.models import CorrectionReason, HoldReason
from billing.services.revenue_metrics import (
    BillingQuality,
    MetricsSummary,
    metrics_summary,
    month_first,
    mrr_reconciliation,
)
from portal import charts
from subscriptions import clock
from subscriptions.models import Customer
from subscriptions.money import format_money_staff

MONTHS_SHOWN = 14
COHORT_MONTHS_SHOWN = 12


def percent(value: Decimal | None, places: int = 1) -> str:
    """Decimal("1.0250") → "102.5%"; "—" for None."""
    if value is None:
        return "—"
    return f"{(Decimal(value) * 100).quantize(Decimal(1).scaleb(-places)):f}%"


def duration(seconds: int | None) -> str:
    """Seconds as the largest sensible units: 95 → "1 min 35 s", 7200 → "2 h 0 min", 90000 → "1 d 1 h"; "—"."""
    if seconds is None:
        return "—"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


@dataclass(frozen=True)
class QualityRow:
    month: date
    issued: int
    right_first_time: str
    root_causes: list[str]
    created: int
    held: int
    holds_by_check: list[str]
    hold_release_median: str
    enablement_runs: int
    enablement_p50: str
    enablement_p95: str


@dataclass
class MetricsPage:
    currency: str
    end_month: date
    summary: MetricsSummary | None = None
    currencies: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    movement_chart: charts.Chart | None = None
    mrr_chart: charts.Chart | None = None
    cohort_chart: charts.Chart | None = None
    quality: list[QualityRow] = field(default_factory=list)

    def money(self, minor: int | None) -> str:
        return "—" if minor is None else format_money_staff(minor, self.currency)

    @property
    def mrr(self) -> str:
        return self.money(self.summary.mrr_minor)

    @property
    def arr(self) -> str:
        return self.money(self.summary.arr_minor)

    @property
    def arpa(self) -> str:
        return self.money(self.summary.arpa_minor)

    @property
    def ltv(self) -> str:
        return self.money(self.summary.ltv.ltv_minor)

    @property
    def nrr(self) -> str:
        return percent(self.summary.nrr)

    @property
    def grr(self) -> str:
        return percent(self.summary.grr)

    @property
    def logo_churn(self) -> str:
        return percent(self.summary.logo_churn, places=2)

    @property
    def monthly_churn(self) -> str:
        return percent(self.summary.ltv.monthly_churn_rate, places=2)

    @property
    def gross_margin(self) -> str:
        return percent(self.summary.ltv.gross_margin, places=0)

    @property
    def months(self) -> list[dict]:
        return [
            {
                "month": m.month,
                "mrr": self.money(m.mrr_minor),
                "new": self.money(m.new_minor),
                "expansion": self.money(m.expansion_minor),
                "reactivation": self.money(m.reactivation_minor),
                "contraction": self.money(m.contraction_minor),
                "churned": self.money(m.churned_minor),
                "net": self.money(m.net_movement_minor),
                "customers": m.customers_end,
                "new_customers": m.new_customers,
                "churned_customers": m.churned_customers,
                "logo_churn": percent(m.logo_churn, places=2),
                "nrr": percent(m.nrr),
                "grr": percent(m.grr),
                "arpa": self.money(m.arpa_minor),
            }
            for m in self.summary.months
        ]


def _label(choices, code: str) -> str:
    try:
        return choices(code).label
    except ValueError:
        return code


def quality_row(q: BillingQuality) -> QualityRow:
    return QualityRow(
        month=q.month,
        issued=q.issued_invoices,
        right_first_time=percent(q.right_first_time_rate),
        root_causes=[f"{_label(CorrectionReason, code)} ({count})" for code, count in q.root_causes[:3]],
        created=q.created_invoices,
        held=q.held_invoices,
        holds_by_check=[
            f"{_label(HoldReason, code)}: {held} ({percent(share)})" for code, held, share in q.holds_by_check
        ],
        hold_release_median=duration(q.hold_release_median_seconds),
        enablement_runs=q.enablement_runs,
        enablement_p50=duration(q.enablement_p50_seconds),
        enablement_p95=duration(q.enablement_p95_seconds),
    )


def _charts(page: MetricsPage) -> None:
    summary = page.summary
    labels = [f"{m.month:%Y-%m}" for m in summary.months]

    def money(value) -> str:
        return page.money(int(value))

    page.movement_chart = charts.bar_chart(
        title=f"MRR movements by month ({page.currency})",
        labels=labels,
        series=[
            charts.Series("New", [m.new_minor for m in summary.months], "#0072b2"),
            charts.Series("Expansion", [m.expansion_minor for m in summary.months], "#009e73"),
            charts.Series("Reactivation", [m.reactivation_minor for m in summary.months], "#56b4e9"),
            charts.Series("Contraction", [m.contraction_minor for m in summary.months], "#e69f00"),
            charts.Series("Churned", [m.churned_minor for m in summary.months], "#d55e00"),
        ],
        fmt=money,
        description="Each month's new, expansion and reactivation MRR above the axis; contraction and churned MRR "
        "below it.",
        empty_message="No MRR movements in these months.",
    )
    page.mrr_chart = charts.line_chart(
        title=f"MRR at each month's end ({page.currency})",
        labels=labels,
        series=[charts.Series("MRR", [m.mrr_minor for m in summary.months])],
        fmt=money,
        empty_message="No MRR in these months.",
    )
    cohorts = [row for row in summary.cohorts if row.customers][-COHORT_MONTHS_SHOWN:]
    width = max((len(row.retained) for row in cohorts), default=0)
    page.cohort_chart = charts.line_chart(
        title="Cohort retention (customers still paying, by months since their first paid month)",
        labels=[f"Month {k}" for k in range(width)],
        series=[
            charts.Series(
                f"{row.cohort:%Y-%m} ({row.customers})",
                [None if r is None else r * 100 for r in row.rates] + [None] * (width - len(row.retained)),
            )
            for row in cohorts
        ],
        fmt=lambda value: f"{Decimal(value).quantize(Decimal('0.1')):f}%",
        y_max=100,
        empty_message="No cohorts yet.",
    )


def metrics_page_data(*, end_month: date | None = None, currency: str | None = None) -> MetricsPage:
    """The page's figures for the 14 months ending with `end_month` (default: this month) in `currency` (default:
    the first currency with stored figures, else the first enabled one)."""
    end_month = month_first(end_month or clock.today())
    enabled = [c.upper() for c in settings.ENABLED_CURRENCIES]
    wanted = (currency or "").strip().upper()
    page = MetricsPage(currency=wanted or enabled[0], end_month=end_month)
    if wanted and not (len(wanted) == 3 and wanted.isalpha()):
        page.problems.append("Choose a currency by its three-letter code.")
        page.currency = enabled[0]
    summary = metrics_summary(end_month=end_month, currency=page.currency, months=MONTHS_SHOWN)
    if not wanted and summary.currencies and page.currency not in summary.currencies:
        page.currency = summary.currencies[0]
        summary = metrics_summary(end_month=end_month, currency=page.currency, months=MONTHS_SHOWN)
    page.summary = summary
    page.currencies = sorted(set(enabled) | set(summary.currencies))
    page.quality = [quality_row(q) for q in summary.quality]
    _charts(page)
    return page


@dataclass(frozen=True)
class ReconciliationRow:
    customer_id: int
    customer: str
    currency: str
    fact_mrr: str
    invoiced_mrr: str
    difference: str
    reasons: list[str]


REASON_LABELS = {
    "trial": "in trial (MRR counts from the first paid period)",
    "proration": "prorated invoice",
    "credit_note": "credit note",
    "discount": "discount",
    "not_invoiced": "not invoiced yet",
    "unexplained": "unexplained — look into it",
}


def reconciliation_rows(*, month: date) -> list[ReconciliationRow]:
    differences = mrr_reconciliation(month_first(month))
    names = dict(Customer.objects.filter(pk__in={d.customer_id for d in differences}).values_list("pk", "name"))
    return [
        ReconciliationRow(
            customer_id=d.customer_id,
            customer=names.get(d.customer_id, f"#{d.customer_id}"),
            currency=d.currency,
            fact_mrr=format_money_staff(d.fact_mrr_minor, d.currency),
            invoiced_mrr=format_money_staff(d.invoiced_mrr_minor, d.currency),
            difference=format_money_staff(d.difference_minor, d.currency),
            reasons=[REASON_LABELS.get(r, r) for r in d.reasons],
        )
        for d in differences
    ]
