"""Reads for the back office's customer health page and its CSV export (issue 20).

Every customer's newest health snapshot (billing.services.health stores them), their MRR today from subscription
facts (`billing.services.revenue_metrics.mrr_by_customer`) and the next renewal of their live subscriptions, in a
fixed number of queries whatever the number of customers. The at-risk list is sorted by MRR at stake: what would be
lost if the customer left (grouped by currency, largest first; no exchange rates are applied).

The page (`health_overview`) never loads every customer: the stage counts and the score distribution are counted
by the database, MRR is computed only for the customers at risk, and the snapshot details and renewals are read only
for the rows shown (AT_RISK_SHOWN). The CSV (`health_rows`) streams every customer.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from django.db.models import Count, F, Min, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse

from billing.health import formulas
from billing.models import CustomerHealthSnapshot
from billing.services.health import health_weights_current
from billing.services.revenue_metrics import CustomerMRR, mrr_by_customer
from subscriptions import clock
from subscriptions.models import LIVE_STATUSES, Customer, Subscription
from subscriptions.money import format_money_staff

AT_RISK_SHOWN = 100  # rows on the page; the CSV has every customer
SCORE_BANDS = 10  # the distribution's bands of ten points (the last one includes 100)
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
    weights: dict[str, int]
    scored: int = 0
    at_risk: list[HealthRow] = field(default_factory=list)  # sorted by MRR at stake, at most AT_RISK_SHOWN
    at_risk_total: int = 0
    at_risk_mrr: dict[str, int] = field(default_factory=dict)  # currency → MRR of every at-risk customer
    stage_counts: dict[str, int] = field(default_factory=dict)  # customers by the stage of their newest snapshot
    score_bands: list[int] = field(default_factory=lambda: [0] * SCORE_BANDS)  # customers per 10 points, 0–9 … 90–100

    @property
    def at_risk_mrr_display(self) -> list[str]:
        return [format_money_staff(amount, currency) for currency, amount in sorted(self.at_risk_mrr.items())]


def is_at_risk(*, score: int | None, stage: str, at_risk_below: int) -> bool:
    """At risk: the stage says so (past due, or the score under the threshold when computed), or the score is under
    today's threshold."""
    return stage == "at_risk" or (score is not None and score < at_risk_below)


def _components(snapshot) -> list[Component]:
    weights = snapshot.weights or {}
    return [
        Component(name, COMPONENT_LABELS[name], (snapshot.components or {}).get(name), weights.get(name, 0))
        for name in formulas.COMPONENTS
    ]


def _renewals(customer_ids=None) -> dict[int, dict]:
    """{customer id: {"renews": the next period end of a live subscription, "cancelling": how many cancel then}}."""
    live = Subscription.objects.filter(status__in=LIVE_STATUSES)
    if customer_ids is not None:
        live = live.filter(customer_id__in=customer_ids)
    return {
        row["customer_id"]: row
        for row in live.values("customer_id").annotate(
            renews=Min("current_period_end"), cancelling=Count("id", filter=Q(cancel_at_period_end=True))
        )
    }


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
    renewals = _renewals()
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


def newest_snapshots() -> QuerySet:
    """Each customer's newest snapshot (one row per scored customer), as a queryset to count or filter in SQL.
    Driven from the customers: one seek of the health_customer_latest index per customer. (Driven from the snapshots,
    every snapshot ran that seek for its customer: a cost growing with each nightly run, 0.6 s after a year of 1,000
    customers.)"""
    newest = CustomerHealthSnapshot.objects.filter(customer_id=OuterRef("pk")).order_by("-computed_at", "-id")
    ids = Customer.objects.annotate(snapshot_id=Subquery(newest.values("id")[:1])).values("snapshot_id")
    return CustomerHealthSnapshot.objects.filter(pk__in=ids)


@dataclass(frozen=True)
class CustomerLink:
    customer_id: int
    name: str

    @property
    def url(self) -> str:
        return reverse("admin:subscriptions_customer_change", args=[self.customer_id])


def customer_links(ids) -> dict[int, CustomerLink]:
    """Name and 360-view link of the given customers (one query), e.g. for the weights preview."""
    return {pk: CustomerLink(pk, name) for pk, name in Customer.objects.filter(pk__in=ids).values_list("pk", "name")}


def health_overview(*, on: date | None = None) -> HealthOverview:
    """The health page's figures in a fixed number of queries whatever the number of customers (eight, plus
    mrr_by_customer's for the at-risk customers): the weights, the stage counts, the score bands, the at-risk
    customers, their MRR, then the snapshots and renewals of the AT_RISK_SHOWN rows shown."""
    on = on or clock.today()
    weights = health_weights_current()
    view = HealthOverview(weights=weights)
    latest = newest_snapshots()
    for stage, customers, scored in (
        latest.order_by()
        .values_list("stage")
        .annotate(n=Count("id"), scored=Count("score"))
        .values_list("stage", "n", "scored")
    ):
        view.stage_counts[stage] = customers
        view.scored += scored
    for band, customers in (
        latest.filter(score__isnull=False)
        .order_by()
        .annotate(band=F("score") / 10)  # integer division on an integer column (SQLite and PostgreSQL)
        .values_list("band")
        .annotate(n=Count("id"))
        .values_list("band", "n")
    ):
        view.score_bands[min(max(int(band), 0), SCORE_BANDS - 1)] += customers
    at_risk_q = Q(stage="at_risk") | Q(score__lt=weights["at_risk_below"])
    at_risk = list(
        latest.filter(at_risk_q).values_list("id", "customer_id", "customer__name", "customer__currency", "score")
    )
    mrr = mrr_by_customer(on, customer_ids=latest.filter(at_risk_q).values("customer_id"))
    ranked = []
    for snapshot_id, customer_id, name, currency, score in at_risk:
        customer_mrr = mrr.get(customer_id)
        amount = customer_mrr.mrr_minor if customer_mrr else 0
        currency = customer_mrr.currency if customer_mrr else currency
        view.at_risk_mrr[currency] = view.at_risk_mrr.get(currency, 0) + amount
        # MRR at stake first (within a currency), then the lowest score, then the name.
        order = (currency, -amount, score if score is not None else 101, name.lower())
        ranked.append((order, snapshot_id, customer_id, name, currency, amount))
    ranked.sort(key=lambda item: item[0])
    view.at_risk_total = len(ranked)
    shown = ranked[:AT_RISK_SHOWN]
    snapshots = {s.pk: s for s in CustomerHealthSnapshot.objects.filter(pk__in=[item[1] for item in shown])}
    renewals = _renewals([item[2] for item in shown])
    for _, snapshot_id, customer_id, name, currency, amount in shown:
        snapshot = snapshots[snapshot_id]
        renewal = renewals.get(customer_id) or {}
        view.at_risk.append(
            HealthRow(
                customer_id=customer_id,
                name=name,
                score=snapshot.score,
                stage=snapshot.stage,
                explanation=snapshot.explanation,
                computed_at=snapshot.computed_at,
                components=_components(snapshot),
                mrr_minor=amount,
                currency=currency,
                renews_on=clock.utc_date(renewal["renews"]) if renewal.get("renews") else None,
                cancels=bool(renewal.get("cancelling")),
                at_risk=True,
            )
        )
    return view
