"""Revenue metrics (issue 20): MRR from subscription facts, the stored monthly aggregates, and the summary staff read.

- `mrr_by_customer(on)`: each customer's MRR on a day, from the terms in force at the end of that day (UTC): the
  subscription's price snapshot, its seat count from the seat ledger, its add-ons live then, its interval; trials
  and ended subscriptions count 0. Never from invoices (`mrr_reconciliation` compares the two).
- `revenue_months_update(month)`: recompute one month's stored aggregates (RevenueMonth per currency,
  RevenueCustomerMonth per paying customer, BillingQualityMonth). Nightly for the current and the previous month
  (beat `billing-revenue-metrics-nightly`), and `manage.py revenue_metrics_backfill --months N`.
- `metrics_summary(end_month=, currency=, months=)`: the staff page's figures, read only from the stored aggregates
  (a constant number of queries whatever the number of customers).
- `mrr_reconciliation(month)`: per-customer differences between fact-based MRR and the invoiced recurring amounts.

Definitions: docs/metrics.md ("Revenue metrics"); formulas: billing/metrics/revenue.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.conf import settings

from billing.metrics import revenue as formulas

DEFAULT_GROSS_MARGIN = Decimal("0.80")


# --- dataclasses (the interface the staff pages read) -----------------------------------------------------------


@dataclass(frozen=True)
class CustomerMRR:
    customer_id: int
    currency: str
    mrr_minor: int


@dataclass(frozen=True)
class MonthFigures:
    """One month of the summary (amounts in minor units of the summary's currency; movements signed)."""

    month: date
    mrr_minor: int
    arr_minor: int
    new_minor: int
    expansion_minor: int
    contraction_minor: int
    churned_minor: int
    reactivation_minor: int
    customers_start: int
    customers_end: int
    new_customers: int
    churned_customers: int
    reactivated_customers: int
    nrr: Decimal | None  # trailing 12 months, e.g. Decimal("1.0250"); None without customers 12 months earlier
    grr: Decimal | None
    logo_churn: Decimal | None  # churned customers ÷ customers at the month's start
    arpa_minor: int | None

    @property
    def net_movement_minor(self) -> int:
        return (
            self.new_minor + self.expansion_minor + self.contraction_minor + self.churned_minor + self.reactivation_minor
        )


@dataclass(frozen=True)
class BillingQuality:
    """One month of billing quality (all currencies)."""

    month: date
    issued_invoices: int
    right_first_time: int
    right_first_time_rate: Decimal | None  # right_first_time ÷ issued_invoices
    root_causes: tuple[tuple[str, int], ...]  # (CorrectionReason code, corrections), most frequent first
    created_invoices: int
    held_invoices: int
    holds_by_check: tuple[tuple[str, int, Decimal | None], ...]  # (HoldReason code, invoices held, share of created)
    hold_release_median_seconds: int | None
    enablement_runs: int
    enablement_p50_seconds: int | None
    enablement_p95_seconds: int | None


@dataclass(frozen=True)
class MetricsSummary:
    currency: str
    end_month: date
    months: tuple[MonthFigures, ...]  # oldest first, one per month (zeros for a month never computed)
    mrr_minor: int  # at the end of end_month
    arr_minor: int
    nrr: Decimal | None
    grr: Decimal | None
    logo_churn: Decimal | None  # end_month's
    arpa_minor: int | None
    ltv: formulas.LifetimeValue
    cohorts: tuple[formulas.CohortRow, ...]
    quality: tuple[BillingQuality, ...]  # oldest first, same months
    computed_at: datetime | None  # the oldest computation among the months shown (None: never computed)
    currencies: tuple[str, ...] = field(default_factory=tuple)  # currencies with stored figures, for a picker


@dataclass(frozen=True)
class ReconciliationDifference:
    customer_id: int
    currency: str
    fact_mrr_minor: int  # from subscription facts at the month's end
    invoiced_mrr_minor: int  # recurring invoice lines covering the month's end, normalised to a month
    difference_minor: int  # fact − invoiced
    reasons: tuple[str, ...]  # "trial", "proration", "credit_note", "discount", "not_invoiced", "unexplained"


# --- settings ---------------------------------------------------------------------------------------------------


def gross_margin() -> Decimal:
    """settings.REVENUE_GROSS_MARGIN (a fraction, 0 < m ≤ 1; default 0.80) as a Decimal."""
    value = Decimal(str(getattr(settings, "REVENUE_GROSS_MARGIN", DEFAULT_GROSS_MARGIN)))
    if not (0 < value <= 1):
        raise ValueError(f"REVENUE_GROSS_MARGIN must be a fraction in (0, 1], not {value}")
    return value


# --- dates ------------------------------------------------------------------------------------------------------


def month_first(day: date) -> date:
    return date(day.year, day.month, 1)


def month_add(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_last_day(month: date) -> date:
    return date.fromordinal(month_add(month, 1).toordinal() - 1)


def end_of_day(day: date) -> datetime:
    """The instant a day's MRR is read at: midnight UTC after it (terms in force then count)."""
    return datetime.combine(date.fromordinal(day.toordinal() + 1), datetime.min.time(), tzinfo=UTC)


# --- the services (implemented in the following commits) ---------------------------------------------------------


def mrr_by_customer(on: date) -> dict[int, CustomerMRR]:
    """Each paying customer's MRR at the end of day `on` (UTC), from subscription facts; customers with 0 left out."""
    raise NotImplementedError


def revenue_months_update(month: date) -> None:
    """Recompute the stored aggregates of one month (its 1st, or any day in it). Idempotent."""
    raise NotImplementedError


def metrics_summary(*, end_month: date, currency: str, months: int = 14) -> MetricsSummary:
    """The staff metrics page's figures for the `months` months ending with `end_month`, from stored aggregates."""
    raise NotImplementedError


def mrr_reconciliation(month: date) -> list[ReconciliationDifference]:
    """Customers whose fact-based MRR at the month's end differs from what their invoices bill for that day."""
    raise NotImplementedError
