"""Reads for the back office's customer health page and its CSV export (issue 20).

Every customer's newest health snapshot (billing.services.health stores them), their MRR today from subscription
facts (`billing.services.revenue_metrics.mrr_by_customer`) and the next renewal of their live subscriptions, in a
fixed number of queries whatever the number of customers. The at-risk list is sorted by MRR at stake: what would be
lost if the customer left (grouped by currency, largest first; no exchange rates are applied).
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.urls import reverse

from billing.health import formulas
from billing.models import CustomerHealthSnapshot
from billing.services.health import health_weights_current
from billing.services.revenue_metrics import CustomerMRR, mrr_by_customer
from subscriptions import clock
from subscriptions.models import LIVE_STATUSES, Customer, Subscription
from subscriptions.money import format_money_staff

AT_RISK_SHOWN = 100  # rows on the page; the CSV has every customer
COMPONENT_LABELS = {
    "seat_adoption": "Seat adoption",
    "activity": "Activity",
    "payment": "Payment",
    "enablement": "Enablement",
    "friction": "Billing friction",
    "effort": "Effort",
}
STAGE_LABELS = {
    "onboarding": "Onboarding",
    "adopting": "Adopting",
    "established": "Established",
    "expanding": "Expanding",
    "at_risk": "At risk",
    "churned": "Churned",
}


@dataclass(frozen=True)
class Component:
    name: str
    label: str
    score: int | None
    weight: int


@dataclass
class HealthRow:
    customer_id: int
    name: str
    score: int | None
    stage: str
    explanation: str
    computed_at: datetime | None
    components: list[Component]
    mrr_minor: int
    currency: str
    renews_on: date | None
    cancels: bool
    at_risk: bool

    @property
    def stage_label(self) -> str:
        return STAGE_LABELS.get(self.stage, self.stage or "—")

    @property
    def mrr_display(self) -> str:
        return format_money_staff(self.mrr_minor, self.currency)

    @property
    def url(self) -> str:
        return reverse("admin:subscriptions_customer_change", args=[self.customer_id])


@dataclass
class HealthOverview:
    rows: list[HealthRow]  # every customer with a snapshot
    weights: dict[str, int]
    scored: int = 0
    at_risk: list[HealthRow] = field(default_factory=list)  # sorted by MRR at stake, at most AT_RISK_SHOWN
    at_risk_total: int = 0
    at_risk_mrr: dict[str, int] = field(default_factory=dict)  # currency → MRR of every at-risk customer
    stage_counts: dict[str, int] = field(default_factory=dict)

    @property
    def at_risk_mrr_display(self) -> list[str]:
        return [format_money_staff(amount, currency) for currency, amount in sorted(self.at_risk_mrr.items())]


def is_at_risk(*, score: int | None, stage: str, at_risk_below: int) -> bool:
    """At risk: the stage says so (past due, or the score under the threshold when computed), or the score is under
    today's threshold."""
    return stage == "at_risk" or (score is not None and score < at_risk_below)


def at_risk_order(row: HealthRow) -> tuple:
    """MRR at stake first (within a currency), then the lowest score, then the name."""
    return (row.currency, -row.mrr_minor, row.score if row.score is not None else 101, row.name.lower())


def _components(snapshot) -> list[Component]:
    weights = snapshot.weights or {}
    return [
        Component(name, COMPONENT_LABELS[name], (snapshot.components or {}).get(name), weights.get(name, 0))
        for name in formulas.COMPONENTS
    ]


def health_rows(
    *, on: date | None = None, mrr: dict[int, CustomerMRR] | None = None, with_unscored: bool = False
) -> Iterator[HealthRow]:
    """One row per customer (with their newest snapshot; also those without one when `with_unscored`), by name.
    Queries: the customers with their newest snapshot's id (one), the snapshots (one), the renewals (one), and
    mrr_by_customer's own."""
    on = on or clock.today()
    weights = health_weights_current()
    mrr = mrr_by_customer(on) if mrr is None else mrr
    newest = CustomerHealthSnapshot.objects.filter(customer=OuterRef("pk")).order_by("-computed_at", "-id")
    customers = Customer.objects.annotate(snapshot_id=Subquery(newest.values("id")[:1])).order_by("name", "pk")
    if not with_unscored:
        customers = customers.filter(snapshot_id__isnull=False)
    customers = list(customers.values_list("pk", "name", "currency", "snapshot_id"))
    snapshots = CustomerHealthSnapshot.objects.in_bulk([sid for *_, sid in customers if sid is not None])
    renewals = {
        row["customer_id"]: row
        for row in Subscription.objects.filter(status__in=LIVE_STATUSES)
        .values("customer_id")
        .annotate(renews=Min("current_period_end"), cancelling=Count("id", filter=Q(cancel_at_period_end=True)))
    }
    for pk, name, currency, snapshot_id in customers:
        snapshot = snapshots.get(snapshot_id)
        renewal = renewals.get(pk) or {}
        customer_mrr = mrr.get(pk)
        score = snapshot.score if snapshot else None
        stage = snapshot.stage if snapshot else ""
        yield HealthRow(
            customer_id=pk,
            name=name,
            score=score,
            stage=stage,
            explanation=snapshot.explanation if snapshot else "",
            computed_at=snapshot.computed_at if snapshot else None,
            components=_components(snapshot) if snapshot else [],
            mrr_minor=customer_mrr.mrr_minor if customer_mrr else 0,
            currency=customer_mrr.currency if customer_mrr else currency,
            renews_on=clock.utc_date(renewal["renews"]) if renewal.get("renews") else None,
            cancels=bool(renewal.get("cancelling")),
            at_risk=snapshot is not None
            and is_at_risk(score=score, stage=stage, at_risk_below=weights["at_risk_below"]),
        )


def health_overview(*, on: date | None = None, mrr: dict[int, CustomerMRR] | None = None) -> HealthOverview:
    rows = list(health_rows(on=on, mrr=mrr))
    view = HealthOverview(rows=rows, weights=health_weights_current())
    view.scored = sum(1 for row in rows if row.score is not None)
    at_risk = sorted((row for row in rows if row.at_risk), key=at_risk_order)
    view.at_risk_total = len(at_risk)
    view.at_risk = at_risk[:AT_RISK_SHOWN]
    for row in at_risk:
        view.at_risk_mrr[row.currency] = view.at_risk_mrr.get(row.currency, 0) + row.mrr_minor
    for row in rows:
        view.stage_counts[row.stage] = view.stage_counts.get(row.stage, 0) + 1
    return view
