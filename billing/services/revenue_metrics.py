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

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.metrics import revenue as formulas
from billing.models import (
    ISSUED_STATUSES,
    BillingQualityMonth,
    CreditNote,
    CreditNoteLine,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceStatusChange,
    LineKind,
    RevenueCohortMonth,
    RevenueCustomerMonth,
    RevenueMonth,
)
from subscriptions.models import (
    AuditEvent,
    Price,
    ProvisioningRun,
    RunOutcome,
    ScheduledChange,
    SeatLedgerEntry,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
)

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
            self.new_minor
            + self.expansion_minor
            + self.contraction_minor
            + self.churned_minor
            + self.reactivation_minor
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


# --- MRR from subscription facts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _BaseTerms:
    """The base package's recurring terms in one stretch of a subscription's life (between package changes)."""

    interval: str
    flat_amount_minor: int
    seat_amount_minor: int
    included_seats: int


@dataclass
class _SubscriptionFacts:
    pk: int
    customer_id: int
    currency: str
    started_at: datetime  # first seat-ledger row ("subscribed"), else created_at
    paying_from: datetime  # started_at, or the trial's end
    ends_at: datetime | None  # canceled_at (access stops) or ended_at
    current: _BaseTerms
    trial_end: datetime | None


def _in_force(facts: _SubscriptionFacts, moment: datetime) -> bool:
    """Paying during the last instant before `moment`: began before it and had not stopped before it."""
    return facts.paying_from < moment and (facts.ends_at is None or facts.ends_at >= moment)


def _subscription_facts(*, before: datetime, customer_ids=None) -> list[_SubscriptionFacts]:
    """Every subscription that began before `before` (one query)."""
    first_ledger = SeatLedgerEntry.objects.filter(subscription_id=OuterRef("pk")).order_by("effective_at", "pk")
    rows = (
        Subscription.objects.annotate(
            started=Coalesce(Subquery(first_ledger.values("effective_at")[:1]), F("created_at")),
            revenue_end=Coalesce(F("canceled_at"), F("ended_at")),
        )
        .filter(started__lt=before)
        .values(
            "pk",
            "customer_id",
            "currency",
            "started",
            "trial_end",
            "revenue_end",
            "interval",
            "flat_amount_minor",
            "seat_amount_minor",
            "included_seats",
        )
        .order_by("pk")
    )
    if customer_ids is not None:
        rows = rows.filter(customer_id__in=customer_ids)
    facts = []
    for row in rows:
        started, trial_end = row["started"], row["trial_end"]
        facts.append(
            _SubscriptionFacts(
                pk=row["pk"],
                customer_id=row["customer_id"],
                currency=row["currency"],
                started_at=started,
                paying_from=max(started, trial_end) if trial_end else started,
                ends_at=row["revenue_end"],
                current=_BaseTerms(
                    interval=row["interval"],
                    flat_amount_minor=row["flat_amount_minor"],
                    seat_amount_minor=row["seat_amount_minor"],
                    included_seats=row["included_seats"],
                ),
                trial_end=trial_end,
            )
        )
    return facts


def _package_segments(subs: list[_SubscriptionFacts]) -> dict[int, list[tuple[datetime, _BaseTerms]]]:
    """For subscriptions whose package or interval changed: [(from, terms)], oldest first; the first stretch runs
    from the subscription's start. Stretches before the latest change are priced from the change records: a
    scheduled change's payload (exact), else the catalog price of that package, interval and currency that was
    newest when the stretch began (price rows are never edited; docs/metrics.md). Four queries at most."""
    by_pk = {sub.pk: sub for sub in subs}
    events = list(
        AuditEvent.objects.filter(
            action="subscription.package_changed",
            object_type="subscription",
            object_id__in=[str(pk) for pk in by_pk],
        ).order_by("occurred_at", "pk")
    )
    if not events:
        return {}
    change_ids = {e.after.get("change_id") for e in events if e.after.get("change_id")}
    scheduled_ids = {e.after.get("scheduled_change_id") for e in events if e.after.get("scheduled_change_id")}
    changes = {c.pk: c for c in SubscriptionChange.objects.filter(pk__in=change_ids).only("pk", "effective_at")}
    scheduled = {
        c.pk: c
        for c in ScheduledChange.objects.filter(pk__in=scheduled_ids, applied_at__isnull=False).only(
            "pk", "effective_at", "payload"
        )
    }
    slugs = {e.before.get("package") for e in events} | {e.after.get("package") for e in events}
    prices = defaultdict(list)
    for price in Price.objects.filter(package__slug__in=slugs).select_related("package").order_by("created_at", "pk"):
        prices[(price.package.slug, price.currency, price.interval)].append(price)

    def catalog_terms(slug, currency, interval, at) -> _BaseTerms | None:
        rows = prices.get((slug, currency, interval))
        if not rows:
            return None
        chosen = rows[0]
        for row in rows:
            if row.created_at <= at:
                chosen = row
        return _BaseTerms(interval, chosen.flat_amount_minor, chosen.seat_amount_minor, chosen.package.included_seats)

    per_sub: dict[int, list[tuple[datetime, dict, dict | None]]] = defaultdict(list)
    first_before: dict[int, dict] = {}
    for event in events:
        pk = int(event.object_id)
        first_before.setdefault(pk, event.before)
        if event.after.get("immediate"):
            change = changes.get(event.after.get("change_id"))
            if change is not None:
                per_sub[pk].append((change.effective_at, event.after, None))
        else:
            applied = scheduled.get(event.after.get("scheduled_change_id"))
            if applied is not None:
                per_sub[pk].append((applied.effective_at, event.after, applied.payload))
    segments = {}
    for pk, boundaries in per_sub.items():
        sub = by_pk[pk]
        boundaries.sort(key=lambda b: b[0])
        before = first_before[pk]
        first = catalog_terms(before.get("package"), sub.currency, before.get("interval"), sub.started_at)
        stretches = [(sub.started_at, first or sub.current)]
        for index, (at, after, payload) in enumerate(boundaries):
            if index == len(boundaries) - 1:
                terms = sub.current  # the subscription's own snapshot: exact
            elif payload:
                terms = _BaseTerms(
                    payload["interval"],
                    int(payload["flat_amount_minor"]),
                    int(payload["seat_amount_minor"]),
                    int(payload["included_seats"]),
                )
            else:
                terms = catalog_terms(after.get("package"), sub.currency, after.get("interval"), at) or sub.current
            stretches.append((at, terms))
        segments[pk] = stretches
    return segments


def _terms_at(sub: _SubscriptionFacts, segments, moment: datetime) -> _BaseTerms:
    stretches = segments.get(sub.pk)
    if not stretches:
        return sub.current
    terms = stretches[0][1]
    for starts, stretch_terms in stretches[1:]:
        if starts < moment:
            terms = stretch_terms
    return terms


def _mrr_at(moment: datetime, subs: list[_SubscriptionFacts] | None = None) -> dict[tuple[int, str], int]:
    """MRR by (customer id, currency) during the last instant before `moment`; only amounts > 0."""
    if subs is None:
        subs = _subscription_facts(before=moment)
    live = [sub for sub in subs if _in_force(sub, moment)]
    if not live:
        return {}
    ids = [sub.pk for sub in live]
    seats_before = SeatLedgerEntry.objects.filter(subscription_id=OuterRef("pk"), effective_at__lt=moment).order_by(
        "-effective_at", "-pk"
    )
    seats_after = SeatLedgerEntry.objects.filter(subscription_id=OuterRef("pk"), effective_at__gte=moment).order_by(
        "effective_at", "pk"
    )
    seats = dict(
        Subscription.objects.filter(pk__in=ids)
        .annotate(
            seats_then=Coalesce(
                Subquery(seats_before.values("seats_to")[:1]), Subquery(seats_after.values("seats_from")[:1]), "seats"
            )
        )
        .values_list("pk", "seats_then")
    )
    addons = defaultdict(int)
    for sub_id, amount, quantity in (
        SubscriptionAddon.objects.filter(subscription_id__in=ids, started_at__lt=moment)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gte=moment))
        .values_list("subscription_id", "flat_amount_minor", "quantity")
    ):
        addons[sub_id] += amount * quantity
    segments = _package_segments(live)
    totals: dict[tuple[int, str], int] = defaultdict(int)
    for sub in live:
        terms = _terms_at(sub, segments, moment)
        billed = max(0, seats[sub.pk] - terms.included_seats)
        per_period = terms.flat_amount_minor + billed * terms.seat_amount_minor + addons[sub.pk]
        totals[(sub.customer_id, sub.currency)] += formulas.monthly_minor(per_period, terms.interval)
    return {key: value for key, value in totals.items() if value > 0}


def mrr_by_customer(on: date, *, customer_ids=None) -> dict[int, CustomerMRR]:
    """Each paying customer's MRR at the end of day `on` (UTC), from subscription facts; customers with 0 left out.
    `customer_ids` (ids, or a queryset of them, read as a subquery) limits the reads to those customers.

    A customer paying in two currencies (rare: the currency changed between subscriptions) is shown in the one with
    the larger amount; the stored monthly aggregates keep every currency apart."""
    result: dict[int, CustomerMRR] = {}
    moment = end_of_day(on)
    subs = _subscription_facts(before=moment, customer_ids=customer_ids)
    for (customer_id, currency), mrr in sorted(_mrr_at(moment, subs).items()):
        known = result.get(customer_id)
        if known is None or mrr > known.mrr_minor:
            result[customer_id] = CustomerMRR(customer_id=customer_id, currency=currency, mrr_minor=mrr)
    return result


def _first_paid_months(subs: list[_SubscriptionFacts]) -> dict[tuple[int, str], date]:
    """The first month at whose end each (customer, currency) was paying: its cohort."""
    first: dict[tuple[int, str], date] = {}
    for sub in subs:
        began = sub.paying_from.astimezone(UTC)
        # The first month-end boundary after paying began (midnight on the next 1st): counted there unless stopped.
        month = date(began.year, began.month, 1)
        boundary = datetime.combine(month_add(month, 1), datetime.min.time(), tzinfo=UTC)
        if sub.ends_at is not None and sub.ends_at < boundary:
            continue
        key = (sub.customer_id, sub.currency)
        if key not in first or month < first[key]:
            first[key] = month
    return first


# --- the stored monthly aggregates ------------------------------------------------------------------------------


def revenue_months_update(month: date) -> None:
    """Recompute the stored aggregates of one month (its 1st, or any day in it). Idempotent.

    Reads subscription facts at three month-ends (this one, the previous one, and 12 months earlier for NRR/GRR),
    so each month is computed on its own, in any order (the backfill, the nightly run for the current and the
    previous month). Writes RevenueMonth per currency, RevenueCustomerMonth per paying customer,
    RevenueCohortMonth per cohort and BillingQualityMonth, replacing the month's previous rows in one transaction.
    """
    month = month_first(month)
    end = datetime.combine(month_add(month, 1), datetime.min.time(), tzinfo=UTC)
    start = datetime.combine(month, datetime.min.time(), tzinfo=UTC)
    year_ago = datetime.combine(month_add(month, -11), datetime.min.time(), tzinfo=UTC)  # end of month − 12
    subs = _subscription_facts(before=end)
    now_mrr = _mrr_at(end, subs)
    before_mrr = _mrr_at(start, subs)
    year_ago_mrr = _mrr_at(year_ago, subs)
    # Who paid at any moment before this month began (reactivation, not new, when they pay again).
    seen = {
        (sub.customer_id, sub.currency)
        for sub in subs
        if sub.paying_from < start and (sub.ends_at is None or sub.ends_at > sub.paying_from)
    }
    first_paid = _first_paid_months(subs)
    currencies = sorted({cur for _, cur in now_mrr} | {cur for _, cur in before_mrr} | {cur for _, cur in year_ago_mrr})
    computed_at = timezone.now()
    months_rows, customer_rows, cohort_rows = [], [], []
    for currency in currencies:
        after = {cid: v for (cid, cur), v in now_mrr.items() if cur == currency}
        before = {cid: v for (cid, cur), v in before_mrr.items() if cur == currency}
        then = {cid: v for (cid, cur), v in year_ago_mrr.items() if cur == currency}
        moves = formulas.classify_movements(before, after, seen_before={cid for cid, cur in seen if cur == currency})
        base = formulas.retention_base(then, after)
        mrr = sum(after.values())
        months_rows.append(
            RevenueMonth(
                month=month,
                currency=currency,
                mrr_minor=mrr,
                arr_minor=12 * mrr,
                new_minor=moves.new_minor,
                expansion_minor=moves.expansion_minor,
                contraction_minor=moves.contraction_minor,
                churned_minor=moves.churned_minor,
                reactivation_minor=moves.reactivation_minor,
                customers_start=len(before),
                customers_end=len(after),
                new_customers=moves.new_customers,
                churned_customers=moves.churned_customers,
                reactivated_customers=moves.reactivated_customers,
                retention_start_minor=base.start_minor,
                retention_net_minor=base.net_minor,
                retention_gross_minor=base.gross_minor,
                computed_at=computed_at,
            )
        )
        cohorts: dict[date, list[int]] = defaultdict(lambda: [0, 0])
        for customer_id, value in sorted(after.items()):
            cohort = first_paid.get((customer_id, currency), month)
            customer_rows.append(
                RevenueCustomerMonth(
                    month=month, customer_id=customer_id, currency=currency, mrr_minor=value, first_paid_month=cohort
                )
            )
            cohorts[cohort][0] += 1
            cohorts[cohort][1] += value
        for cohort, (customers, value) in sorted(cohorts.items()):
            cohort_rows.append(
                RevenueCohortMonth(currency=currency, cohort=cohort, month=month, customers=customers, mrr_minor=value)
            )
    quality = _billing_quality(month, start, end, computed_at)
    with transaction.atomic():
        RevenueMonth.objects.filter(month=month).delete()
        RevenueCustomerMonth.objects.filter(month=month).delete()
        RevenueCohortMonth.objects.filter(month=month).delete()
        BillingQualityMonth.objects.filter(month=month).delete()
        RevenueMonth.objects.bulk_create(months_rows)
        RevenueCustomerMonth.objects.bulk_create(customer_rows, batch_size=500)
        RevenueCohortMonth.objects.bulk_create(cohort_rows)
        quality.save()


def revenue_months_backfill(*, months: int, until: date | None = None) -> list[date]:
    """Recompute the `months` months ending with `until`'s month (default: this month), oldest first."""
    last = month_first(until or timezone.now().astimezone(UTC).date())
    done = []
    for offset in range(months - 1, -1, -1):
        month = month_add(last, -offset)
        revenue_months_update(month)
        done.append(month)
    return done


def revenue_months_nightly(*, today: date | None = None) -> list[date]:
    """The nightly run: the previous and the current month (late facts, e.g. a cancellation dated back, land)."""
    today = today or timezone.now().astimezone(UTC).date()
    return revenue_months_backfill(months=2, until=today)


# --- billing quality --------------------------------------------------------------------------------------------

SUCCEEDED_RUNS = (RunOutcome.APPLIED, RunOutcome.NOOP)


def _hold_codes(reasons) -> set[str]:
    return {reason["code"] for reason in reasons or [] if isinstance(reason, dict) and reason.get("code")}


def _billing_quality(month: date, start: datetime, end: datetime, computed_at: datetime) -> BillingQualityMonth:
    """Right first time (the simulation report's definition: an issued invoice never credited nor voided), the
    root causes of the corrections, holds by pre-issue check, hold → release time, and time to enablement."""
    issued = list(
        Invoice.objects.filter(status__in=ISSUED_STATUSES, issued_at__gte=start, issued_at__lt=end).values_list(
            "pk", "status", "void_reason_code"
        )
    )
    issued_ids = [pk for pk, _, _ in issued]
    credited = defaultdict(list)
    for invoice_id, code in CreditNote.objects.filter(invoice_id__in=issued_ids).values_list(
        "invoice_id", "reason_code"
    ):
        credited[invoice_id].append(code)
    causes = Counter()
    right = 0
    for pk, status, void_code in issued:
        corrected = status == InvoiceStatus.VOID or pk in credited
        right += not corrected
        causes.update(credited.get(pk, []))
        if status == InvoiceStatus.VOID:
            causes[void_code or "other"] += 1
    created = Invoice.objects.filter(created_at__gte=start, created_at__lt=end)
    created_count = created.count()
    held = list(
        created.filter(status_changes__to_status=InvoiceStatus.HELD).distinct().values_list("pk", "hold_reasons")
    )
    # Every check that held the invoice while it was held: its reasons now, those its "held" audit row recorded and
    # those a re-check while held recorded (a release clears the invoice's own list; a re-check may drop one).
    codes: dict[int, set[str]] = {pk: _hold_codes(reasons) for pk, reasons in held}
    for object_id, after in AuditEvent.objects.filter(
        action__in=("invoice.held", "invoice.hold_reasons_changed"),
        object_type="invoice",
        object_id__in=[str(pk) for pk in codes],
        created_at__gte=start,
    ).values_list("object_id", "after"):
        codes[int(object_id)] |= _hold_codes((after or {}).get("hold_reasons"))
    by_check = Counter()
    for invoice_codes in codes.values():
        by_check.update(invoice_codes)
    # Hold → release: each hold that began in the month, to the invoice's next status change.
    waits = []
    held_at: dict[int, datetime] = {}
    for invoice_id, to_status, at in (
        InvoiceStatusChange.objects.filter(
            invoice_id__in=InvoiceStatusChange.objects.filter(
                to_status=InvoiceStatus.HELD, created_at__gte=start, created_at__lt=end
            ).values("invoice_id")
        )
        .order_by("invoice_id", "created_at", "pk")
        .values_list("invoice_id", "to_status", "created_at")
    ):
        since = held_at.pop(invoice_id, None)
        if since is not None and start <= since < end:
            waits.append(int((at - since).total_seconds()))
        if to_status == InvoiceStatus.HELD:
            held_at[invoice_id] = at
    enablement = [
        int((finished - queued).total_seconds())
        for queued, finished in ProvisioningRun.objects.filter(
            outcome__in=SUCCEEDED_RUNS,
            queued_at__isnull=False,
            finished_at__gte=start,
            finished_at__lt=end,
        ).values_list("queued_at", "finished_at")
    ]
    return BillingQualityMonth(
        month=month,
        issued_invoices=len(issued),
        right_first_time=right,
        root_causes=dict(sorted(causes.items(), key=lambda item: (-item[1], item[0]))),
        created_invoices=created_count,
        held_invoices=len(held),
        holds_by_check=dict(sorted(by_check.items(), key=lambda item: (-item[1], item[0]))),
        hold_release_median_seconds=formulas.percentile_seconds(waits, 50),
        enablement_runs=len(enablement),
        enablement_p50_seconds=formulas.percentile_seconds(enablement, 50),
        enablement_p95_seconds=formulas.percentile_seconds(enablement, 95),
        computed_at=computed_at,
    )


# --- the summary ------------------------------------------------------------------------------------------------

LTV_WINDOW_MONTHS = 12


# The figures a RevenueMonth row stores under the same name; the ratios are worked out from it on reading.
_STORED_FIGURES = (
    "mrr_minor",
    "arr_minor",
    "new_minor",
    "expansion_minor",
    "contraction_minor",
    "churned_minor",
    "reactivation_minor",
    "customers_start",
    "customers_end",
    "new_customers",
    "churned_customers",
    "reactivated_customers",
)


def _month_figures(month: date, row: RevenueMonth | None) -> MonthFigures:
    if row is None:
        return MonthFigures(month, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None, None, None)
    return MonthFigures(
        month=month,
        **{name: getattr(row, name) for name in _STORED_FIGURES},
        nrr=formulas.ratio(row.retention_net_minor, row.retention_start_minor),
        grr=formulas.ratio(row.retention_gross_minor, row.retention_start_minor),
        logo_churn=formulas.logo_churn_rate(row.churned_customers, row.customers_start),
        arpa_minor=formulas.arpa_minor(row.mrr_minor, row.customers_end),
    )


def _quality(month: date, row: BillingQualityMonth | None) -> BillingQuality:
    if row is None:
        return BillingQuality(month, 0, 0, None, (), 0, 0, (), None, 0, None, None)
    return BillingQuality(
        month=month,
        issued_invoices=row.issued_invoices,
        right_first_time=row.right_first_time,
        right_first_time_rate=formulas.ratio(row.right_first_time, row.issued_invoices),
        root_causes=tuple(sorted(row.root_causes.items(), key=lambda item: (-item[1], item[0]))),
        created_invoices=row.created_invoices,
        held_invoices=row.held_invoices,
        holds_by_check=tuple(
            (code, count, formulas.ratio(count, row.created_invoices))
            for code, count in sorted(row.holds_by_check.items(), key=lambda item: (-item[1], item[0]))
        ),
        hold_release_median_seconds=row.hold_release_median_seconds,
        enablement_runs=row.enablement_runs,
        enablement_p50_seconds=row.enablement_p50_seconds,
        enablement_p95_seconds=row.enablement_p95_seconds,
    )


def metrics_summary(*, end_month: date, currency: str, months: int = 14) -> MetricsSummary:
    """The staff metrics page's figures for the `months` months ending with `end_month`, from stored aggregates.

    Four queries whatever the number of customers: the revenue months (with the LTV window), the cohorts, billing
    quality, and the currencies that have figures. A month never computed reads as zeros (nothing stored)."""
    end_month = month_first(end_month)
    months = max(1, months)
    shown = [month_add(end_month, offset) for offset in range(-(months - 1), 1)]
    first = min(shown[0], month_add(end_month, -(LTV_WINDOW_MONTHS - 1)))
    rows = {
        row.month: row for row in RevenueMonth.objects.filter(currency=currency, month__gte=first, month__lte=end_month)
    }
    cohort_cells = defaultdict(dict)
    for cell in RevenueCohortMonth.objects.filter(
        currency=currency, cohort__gte=shown[0], month__gte=shown[0], month__lte=end_month
    ):
        cohort_cells[cell.cohort][cell.month] = cell.customers
    quality_rows = {
        row.month: row for row in BillingQualityMonth.objects.filter(month__gte=shown[0], month__lte=end_month)
    }
    currencies = tuple(RevenueMonth.objects.order_by("currency").values_list("currency", flat=True).distinct())

    figures = tuple(_month_figures(month, rows.get(month)) for month in shown)
    last = figures[-1]
    window = [rows[m] for m in (month_add(end_month, -k) for k in range(LTV_WINDOW_MONTHS)) if m in rows]
    ltv = formulas.lifetime_value(
        arpa=last.arpa_minor,
        gross_margin=gross_margin(),
        churned_customers=sum(row.churned_customers for row in window),
        customer_months=sum(row.customers_start for row in window),
        window_months=LTV_WINDOW_MONTHS,
    )
    cohorts = []
    for index, cohort in enumerate(shown):
        cells = cohort_cells.get(cohort)
        if not cells or not cells.get(cohort):
            continue
        cohorts.append(
            formulas.CohortRow(
                cohort=cohort, customers=cells[cohort], retained=tuple(cells.get(m, 0) for m in shown[index:])
            )
        )
    stamps = [rows[m].computed_at for m in shown if m in rows]
    return MetricsSummary(
        currency=currency,
        end_month=end_month,
        months=figures,
        mrr_minor=last.mrr_minor,
        arr_minor=last.arr_minor,
        nrr=last.nrr,
        grr=last.grr,
        logo_churn=last.logo_churn,
        arpa_minor=last.arpa_minor,
        ltv=ltv,
        cohorts=tuple(cohorts),
        quality=tuple(_quality(month, quality_rows.get(month)) for month in shown),
        computed_at=min(stamps) if stamps else None,
        currencies=currencies,
    )


# --- reconciliation ---------------------------------------------------------------------------------------------

RECURRING_LINE_KINDS = (LineKind.FLAT, LineKind.SEATS, LineKind.ADDON, LineKind.DISCOUNT)


def _line_months(period_start: datetime, period_end: datetime) -> int:
    """How many months a recurring line's service period covers: 12 for an annual line, else 1."""
    return 12 if period_end - period_start > timedelta(days=62) else 1


def mrr_reconciliation(month: date) -> list[ReconciliationDifference]:
    """Customers whose fact-based MRR at the month's end differs from what their invoices bill for that moment.

    Invoiced MRR: the recurring lines (flat fee, seats, add-ons, and their discount lines) of issued, not void,
    regular invoices whose service period covers the last instant of the month, less what credit notes credited on
    those lines, each normalised to a month like the facts (an annual line ÷ 12). Reasons, where the records show
    one: "trial" (a subscription in trial then), "proration" (a mid-period change billed on its own invoice),
    "credit_note", "discount", "not_invoiced" (no issued invoice covers the moment: held, draft or not yet run);
    otherwise "unexplained"."""
    month = month_first(month)
    moment = datetime.combine(month_add(month, 1), datetime.min.time(), tzinfo=UTC)
    facts = _mrr_at(moment)
    covering = InvoiceLine.objects.filter(
        kind__in=RECURRING_LINE_KINDS,
        is_proration=False,
        invoice__status__in=[s for s in ISSUED_STATUSES if s != InvoiceStatus.VOID],
        period_start__lt=moment,
        period_end__gte=moment,
    )
    lines = list(
        covering.values_list(
            "pk", "invoice__customer_id", "invoice__currency", "kind", "amount_minor", "period_start", "period_end"
        )
    )
    credited = defaultdict(int)
    for line_id, amount in CreditNoteLine.objects.filter(invoice_line_id__in=[row[0] for row in lines]).values_list(
        "invoice_line_id", "amount_minor"
    ):
        credited[line_id] += amount
    invoiced: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    reasons: dict[tuple[int, str], set[str]] = defaultdict(set)
    for line_id, customer_id, currency, kind, amount, p_start, p_end in lines:
        key = (customer_id, currency)
        net = amount - credited.get(line_id, 0)
        invoiced[key] += Decimal(net) / _line_months(p_start, p_end)
        if kind == LineKind.DISCOUNT:
            reasons[key].add("discount")
        if credited.get(line_id):
            reasons[key].add("credit_note")
    for customer_id, currency in (
        InvoiceLine.objects.filter(
            Q(is_proration=True) | Q(kind=LineKind.PRORATION),
            invoice__status__in=ISSUED_STATUSES,
            period_start__lt=moment,
            period_end__gte=moment,
        )
        .values_list("invoice__customer_id", "invoice__currency")
        .distinct()
    ):
        reasons[(customer_id, currency)].add("proration")
    for customer_id, currency in (
        Subscription.objects.filter(trial_end__gte=moment)
        .filter(Q(canceled_at__isnull=True) | Q(canceled_at__gte=moment))
        .values_list("customer_id", "currency")
    ):
        reasons[(customer_id, currency)].add("trial")
    differences = []
    for key in sorted(set(facts) | set(invoiced)):
        fact = facts.get(key, 0)
        billed = formulas.round_minor(invoiced.get(key, Decimal(0)))
        if fact == billed:
            continue
        why = set(reasons.get(key, set()))
        if key not in invoiced:
            why.add("not_invoiced")
        differences.append(
            ReconciliationDifference(
                customer_id=key[0],
                currency=key[1],
                fact_mrr_minor=fact,
                invoiced_mrr_minor=billed,
                difference_minor=fact - billed,
                reasons=tuple(sorted(why)) or ("unexplained",),
            )
        )
    return differences
