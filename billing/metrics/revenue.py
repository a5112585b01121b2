"""Revenue metric formulas (issue 20), pure: no database, integer minor units and Decimal, never floats.

Every figure is defined in docs/metrics.md ("Revenue metrics"); tests/billing/test_revenue_formulas.py pins them
(hypothesis properties) and tests/billing/test_revenue_metrics.py checks them on a hand-computed fixture.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

MONTHS_PER_INTERVAL = {"month": 1, "year": 12}


def round_minor(value: Decimal) -> int:
    """A Decimal amount of minor units rounded half up (away from zero on .5) to a whole minor unit."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def monthly_minor(amount_minor: int, interval: str) -> int:
    """The monthly recurring revenue of `amount_minor` billed every `interval` ("month" or "year"): an annual
    amount ÷ 12, rounded half up to the minor unit (1,000.00 a year → 83.33 a month; 1,000.06 → 83.34)."""
    months = MONTHS_PER_INTERVAL.get(interval)
    if months is None:
        raise ValueError(f"Unknown billing interval {interval!r}")
    return round_minor(Decimal(amount_minor) / months)


class MovementKind:
    NEW = "new"
    EXPANSION = "expansion"
    CONTRACTION = "contraction"
    CHURNED = "churned"
    REACTIVATION = "reactivation"
    ALL = ("new", "expansion", "contraction", "churned", "reactivation")


@dataclass(frozen=True)
class Movement:
    customer_id: int
    kind: str
    before_minor: int
    after_minor: int

    @property
    def delta_minor(self) -> int:
        return self.after_minor - self.before_minor


@dataclass(frozen=True)
class Movements:
    """Signed MRR movements between two month-ends (churned and contraction are negative amounts)."""

    new_minor: int = 0
    expansion_minor: int = 0
    contraction_minor: int = 0
    churned_minor: int = 0
    reactivation_minor: int = 0
    new_customers: int = 0
    churned_customers: int = 0
    reactivated_customers: int = 0
    items: tuple[Movement, ...] = field(default_factory=tuple)

    @property
    def net_minor(self) -> int:
        return (
            self.new_minor
            + self.expansion_minor
            + self.contraction_minor
            + self.churned_minor
            + self.reactivation_minor
        )


def classify_movements(
    before: Mapping[int, int], after: Mapping[int, int], *, seen_before: Iterable[int] = ()
) -> Movements:
    """Classify each customer's MRR change from `before` (previous month-end MRR by customer id) to `after`.

    - new: 0 before, > 0 after, and the customer never paid before (not in `seen_before`);
    - reactivation: 0 before, > 0 after, and the customer paid at some earlier time (in `seen_before`);
    - expansion / contraction: > 0 both times and the amount rose / fell;
    - churned: > 0 before, 0 after (the whole previous MRR, negative).
    A customer missing from a map has 0. The signed amounts add up to sum(after) − sum(before) exactly.
    """
    seen = set(seen_before)
    totals = dict.fromkeys(MovementKind.ALL, 0)
    counts = dict.fromkeys(MovementKind.ALL, 0)
    items = []
    for customer_id in sorted(set(before) | set(after)):
        was, now = before.get(customer_id, 0), after.get(customer_id, 0)
        if was == now:
            continue
        if was <= 0 < now:
            kind = MovementKind.REACTIVATION if customer_id in seen else MovementKind.NEW
        elif now <= 0 < was:
            kind = MovementKind.CHURNED
        elif now > was:
            kind = MovementKind.EXPANSION
        else:
            kind = MovementKind.CONTRACTION
        totals[kind] += now - was
        counts[kind] += 1
        items.append(Movement(customer_id=customer_id, kind=kind, before_minor=was, after_minor=now))
    return Movements(
        new_minor=totals[MovementKind.NEW],
        expansion_minor=totals[MovementKind.EXPANSION],
        contraction_minor=totals[MovementKind.CONTRACTION],
        churned_minor=totals[MovementKind.CHURNED],
        reactivation_minor=totals[MovementKind.REACTIVATION],
        new_customers=counts[MovementKind.NEW],
        churned_customers=counts[MovementKind.CHURNED],
        reactivated_customers=counts[MovementKind.REACTIVATION],
        items=tuple(items),
    )


@dataclass(frozen=True)
class RetentionBase:
    """What NRR and GRR need, summed over the customers paying at the start of the window."""

    start_minor: int  # their MRR at the start (12 months earlier)
    net_minor: int  # their MRR now (expansion counts)
    gross_minor: int  # their MRR now, each capped at their start MRR (expansion does not count)


def retention_base(start: Mapping[int, int], end: Mapping[int, int]) -> RetentionBase:
    """NRR/GRR sums for the cohort of customers with MRR > 0 in `start`; customers new since are left out."""
    cohort = {cid: mrr for cid, mrr in start.items() if mrr > 0}
    return RetentionBase(
        start_minor=sum(cohort.values()),
        net_minor=sum(max(0, end.get(cid, 0)) for cid in cohort),
        gross_minor=sum(min(max(0, end.get(cid, 0)), mrr) for cid, mrr in cohort.items()),
    )


def ratio(numerator: int, denominator: int, *, places: int = 4) -> Decimal | None:
    """numerator ÷ denominator as a Decimal rounded half up to `places` (0.9375), None when the denominator is 0."""
    if denominator <= 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def nrr(base: RetentionBase) -> Decimal | None:
    """Net revenue retention: the start cohort's MRR now ÷ its MRR 12 months ago."""
    return ratio(base.net_minor, base.start_minor)


def grr(base: RetentionBase) -> Decimal | None:
    """Gross revenue retention: like NRR but each customer's MRR capped at its start (never above 1)."""
    return ratio(base.gross_minor, base.start_minor)


def logo_churn_rate(churned_customers: int, customers_at_start: int) -> Decimal | None:
    """Customers lost in the period ÷ paying customers at its start."""
    return ratio(churned_customers, customers_at_start)


def arpa_minor(mrr_minor: int, customers: int) -> int | None:
    """Average revenue per (paying) account: MRR ÷ paying customers, rounded half up; None without customers."""
    if customers <= 0:
        return None
    return round_minor(Decimal(mrr_minor) / customers)


@dataclass(frozen=True)
class LifetimeValue:
    ltv_minor: int | None
    arpa_minor: int | None
    gross_margin: Decimal
    monthly_churn_rate: Decimal | None
    churned_customers: int
    customer_months: int
    window_months: int
    assumptions: tuple[str, ...]


def lifetime_value(
    *,
    arpa: int | None,
    gross_margin: Decimal,
    churned_customers: int,
    customer_months: int,
    window_months: int,
) -> LifetimeValue:
    """LTV = ARPA × gross margin ÷ monthly logo churn rate, rounded half up to the minor unit.

    The monthly churn rate is the churned customers over the window ÷ the customer-months at risk (the sum of each
    month's paying customers at its start), so one quiet or busy month does not swing it. None (with the reason in
    the assumptions) without ARPA or when no customer churned in the window (the lifetime would be unbounded).
    """
    rate = ratio(churned_customers, customer_months, places=6)
    assumptions = [
        f"gross margin {(gross_margin * 100).normalize():f}% of revenue (setting REVENUE_GROSS_MARGIN)",
        f"monthly logo churn averaged over the last {window_months} months: {churned_customers} churned of "
        f"{customer_months} customer-months",
        "customers keep paying today's ARPA until they churn; no expansion, discounting or currency conversion",
    ]
    if arpa is None:
        assumptions.append("no paying customers: no ARPA, no lifetime value")
        return LifetimeValue(
            None, None, gross_margin, rate, churned_customers, customer_months, window_months, tuple(assumptions)
        )
    if not rate:
        assumptions.append("no customer churned in the window: the lifetime value is unbounded and not shown")
        return LifetimeValue(
            None, arpa, gross_margin, rate, churned_customers, customer_months, window_months, tuple(assumptions)
        )
    value = Decimal(arpa) * gross_margin * Decimal(customer_months) / Decimal(churned_customers)
    return LifetimeValue(
        round_minor(value),
        arpa,
        gross_margin,
        rate,
        churned_customers,
        customer_months,
        window_months,
        tuple(assumptions),
    )


@dataclass(frozen=True)
class CohortRow:
    """Customers who first paid in `cohort` (a month's 1st) and how many still pay `k` months later (k = 0, 1, …)."""

    cohort: date
    customers: int
    retained: tuple[int, ...]

    @property
    def rates(self) -> tuple[Decimal | None, ...]:
        return tuple(ratio(n, self.customers) for n in self.retained)


def cohort_rows(
    first_paid: Mapping[int, date], paying_by_month: Mapping[date, Iterable[int]], months: list[date]
) -> list[CohortRow]:
    """Cohort retention: for each month in `months` (ascending 1sts), the customers whose first paying month-end is
    that month, and for each later month in `months` how many of them have MRR > 0 at its end."""
    rows = []
    paying = {month: set(ids) for month, ids in paying_by_month.items()}
    for i, cohort in enumerate(months):
        members = {cid for cid, first in first_paid.items() if first == cohort}
        if not members:
            continue
        retained = tuple(len(members & paying.get(later, set())) for later in months[i:])
        rows.append(CohortRow(cohort=cohort, customers=len(members), retained=retained))
    return rows


def percentile_seconds(values: list[int], pct: int) -> int | None:
    """The nearest-rank percentile (p50 = median of an odd list; the lower middle of an even one), None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))  # ceil(pct/100 × n), at least 1
    return ordered[rank - 1]
