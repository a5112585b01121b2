"""customer_health_compute: score a chunk of customers and store one snapshot each (docs/metrics.md).

A constant number of queries per chunk whatever its size (one per fact: a grouped aggregate, or the few rows
themselves; one bulk insert), so 10,000 customers cost 10,000 ÷ chunk × that constant (bench/health.py). Idempotent
in the sense that rerunning only adds a newer snapshot; the newest snapshot is the current score.
"""

from collections import defaultdict
from datetime import timedelta

from django.db import models, transaction
from django.db.models import Count, OuterRef, Q, Subquery, Sum

from billing.exceptions import HealthWeightsInvalid
from billing.health import formulas
from billing.models import (
    CreditNote,
    CustomerHealthSnapshot,
    HealthWeights,
    Invoice,
    InvoiceStatus,
    JourneyStageChange,
    Payment,
)
from billing.models.payments import PaymentStatus
from billing.services.events import stage_change_event
from subscriptions import clock
from subscriptions.models import (
    LIVE_STATUSES,
    AuditEvent,
    Customer,
    Entitlement,
    EntitlementState,
    Membership,
    Price,
    ProvisioningRun,
    RunOutcome,
    ScheduledChange,
    SeatAssignment,
    SeatLedgerEntry,
    StaffNote,
    Subscription,
    SubscriptionStatus,
    UsageRecord,
)
from subscriptions.prebuilt import prebuilt
from subscriptions.services.audit import audit_record
from subscriptions.services.events import events_record_many

CHUNK_SIZE = 500
BILLING_NOTE_WORDS = ("billing", "invoice", "payment", "refund", "credit")


def health_weights_current() -> dict[str, int]:
    """The weights in force (the newest saved set) and the at-risk threshold, or the defaults."""
    row = HealthWeights.objects.order_by("-id").first()
    if row is None:
        return {**formulas.DEFAULT_WEIGHTS, "at_risk_below": 50}
    return {name: getattr(row, name) for name in (*formulas.COMPONENTS, "at_risk_below")}


def _grouped(queryset) -> dict[int, dict]:
    """{customer id: row} of a prebuilt grouped query (its first `values()` column is the customer)."""
    key = next(iter(queryset.query.values_select))
    return {row[key]: row for row in queryset}


_LIVE = Q(status__in=LIVE_STATUSES)
_BILLING_NOTE = Q()
for _word in BILLING_NOTE_WORDS:
    _BILLING_NOTE |= Q(body__icontains=_word)
del _word

# The fixed part of each fact query: grouping and aggregates (whose expressions Django resolves on `annotate()`, about
# two-thirds of such a query's cost) and the filters that never change. Built once per process (`_fact_query`,
# subscriptions.prebuilt); a call only adds its customers and dates to a clone. Filters added after
# `values().annotate()` name plain columns, so they go to WHERE, exactly as they did before the grouping.
_FACT_SHAPES = {
    "seats": lambda: (
        Subscription.objects.order_by()
        .values("customer_id")
        .annotate(
            n=Sum("seats", filter=_LIVE),
            live=Count("id", filter=_LIVE),
            past_due=Count("id", filter=Q(status=SubscriptionStatus.PAST_DUE)),
            ever=Count("id"),
        )
    ),
    "not_active": lambda: (
        Entitlement.objects.exclude(state__in=(EntitlementState.ACTIVE, EntitlementState.REVOKED))
        .order_by()
        .values("customer_id")
        .annotate(n=Count("id"))
    ),
    "grew": lambda: SeatLedgerEntry.objects.filter(seats_to__gt=models.F("seats_from")).values_list(
        "subscription__customer_id", flat=True
    ),
    "assigned": lambda: (
        SeatAssignment.objects.filter(subscription__status__in=LIVE_STATUSES)
        .order_by()
        .values("subscription__customer_id")
        .annotate(n=Count("id"))
    ),
    "members": lambda: Membership.objects.values_list("customer_id", "user_id", "user__last_login"),
    "usage": lambda: (
        UsageRecord.objects.filter(user__isnull=False)
        .order_by()  # no Meta ordering: its columns would join the DISTINCT
        .values_list("customer_id", "user_id")
        .distinct()
    ),
    # open and held invoices (a customer has a few): overdue is counted from them below, against today
    "invoices": lambda: (
        Invoice.objects.filter(status__in=(InvoiceStatus.OPEN, InvoiceStatus.HELD))
        .order_by()
        .values_list("customer_id", "status", "due_on")
    ),
    "failed_payments": lambda: (
        Payment.objects.filter(status=PaymentStatus.FAILED)
        .order_by()
        .values("invoice__customer_id")
        .annotate(n=Count("id"))
    ),
    "runs": lambda: (
        ProvisioningRun.objects.order_by()
        .values("customer_id")
        .annotate(
            failed=Count("id", filter=Q(outcome__in=(RunOutcome.FAILED, RunOutcome.RETRYING))),
            slow=Count("id", filter=Q(duration_ms__gt=formulas.SLOW_RUN_MS)),
        )
    ),
    "credit_notes": lambda: CreditNote.objects.order_by().values("customer_id").annotate(n=Count("id")),
    "notes": lambda: StaffNote.objects.filter(_BILLING_NOTE).order_by().values("customer_id").annotate(n=Count("id")),
}


@prebuilt
def _fact_query(name: str):
    return _FACT_SHAPES[name]()


def customer_health_facts(*, customer_ids: list[int]) -> dict[int, dict]:
    """The facts behind every component for these customers, in a fixed number of grouped queries."""
    now = clock.now()
    today = clock.today()
    since_30 = now - timedelta(days=30)
    since_90 = now - timedelta(days=90)
    ids = list(customer_ids)
    seats = _grouped(_fact_query("seats").filter(customer_id__in=ids))
    joined, currency, history = {}, {}, {}
    for pk, created_at, customer_currency, back_then in _customers_back_then(ids, now=now):
        joined[pk], currency[pk] = created_at, customer_currency
        history.update(((pk, days), components) for days, components in back_then.items())
    not_active = _grouped(_fact_query("not_active").filter(customer_id__in=ids))
    grew = set(_fact_query("grew").filter(subscription__customer_id__in=ids, effective_at__gte=since_90))
    package_grew = _package_grew_90_days(ids, currency=currency, since_90=since_90)
    assigned = _grouped(_fact_query("assigned").filter(subscription__customer_id__in=ids))
    members = defaultdict(set)
    active = defaultdict(set)
    for customer_id, user_id, last_login in _fact_query("members").filter(customer_id__in=ids):
        members[customer_id].add(user_id)
        if last_login is not None and last_login >= since_30:
            active[customer_id].add(user_id)
    for customer_id, user_id in _fact_query("usage").filter(customer_id__in=ids, day__gte=today - timedelta(days=30)):
        if user_id in members[customer_id]:
            active[customer_id].add(user_id)
    invoices: dict[int, dict] = defaultdict(lambda: {"n": 0, "oldest": None, "held": 0})
    for customer_id, status, due_on in _fact_query("invoices").filter(customer_id__in=ids):
        row = invoices[customer_id]
        if status == InvoiceStatus.HELD:
            row["held"] += 1
        elif due_on is not None and due_on < today:  # open and past its due date: overdue
            row["n"] += 1
            row["oldest"] = due_on if row["oldest"] is None else min(row["oldest"], due_on)
    failed_payments = _grouped(
        _fact_query("failed_payments").filter(invoice__customer_id__in=ids, created_at__gte=since_30)
    )
    runs = _grouped(_fact_query("runs").filter(customer_id__in=ids, started_at__gte=since_30))
    credit_notes = _grouped(_fact_query("credit_notes").filter(customer_id__in=ids, issued_at__gte=since_90))
    notes = _grouped(_fact_query("notes").filter(customer_id__in=ids, created_at__gte=since_90))
    facts = {}
    for cid in ids:
        oldest = invoices.get(cid, {}).get("oldest")
        row = seats.get(cid) or {}
        facts[cid] = {
            "tenure_days": (now - joined[cid]).days if cid in joined else 0,
            "live_subscriptions": row.get("live") or 0,
            "ever_subscribed": bool(row.get("ever")),
            "subscription_past_due": bool(row.get("past_due")),
            "entitlements_not_active": (not_active.get(cid) or {}).get("n") or 0,
            "seats_grew_90_days": cid in grew,
            "package_grew_90_days": cid in package_grew,
            "seats_purchased": (seats.get(cid) or {}).get("n") or 0,
            "seats_assigned": (assigned.get(cid) or {}).get("n") or 0,
            "members": len(members[cid]),
            "active_members": len(active[cid]),
            "overdue_invoices": (invoices.get(cid) or {}).get("n") or 0,
            "days_past_due": (today - oldest).days if oldest else 0,
            "failed_payments": (failed_payments.get(cid) or {}).get("n") or 0,
            "failed_runs": (runs.get(cid) or {}).get("failed") or 0,
            "slow_runs": (runs.get(cid) or {}).get("slow") or 0,
            "held_invoices": (invoices.get(cid) or {}).get("held") or 0,
            "credit_notes": (credit_notes.get(cid) or {}).get("n") or 0,
            "billing_notes": (notes.get(cid) or {}).get("n") or 0,
            **{
                f"{component}_{days}_days_ago": history.get((cid, days), {}).get(component)
                for component in TREND_COMPONENTS
                for days in formulas.TREND_WINDOWS
            },
        }
    return facts


TREND_COMPONENTS = ("seat_adoption", "activity")
TREND_TOLERANCE_DAYS = 7  # "30 days ago" is the newest snapshot computed 30 to 37 days ago (nightly: about 30 days)
PACKAGE_SCHEDULING_LOOKBACK_DAYS = 366  # a scheduled change waits at most one (annual) term before it applies


def _customers_back_then(ids: list[int], *, now):
    """(customer, joined at, currency, {30 or 90: components}) per customer, in one query: the components of the newest
    snapshot computed N to N + 7 days ago, by one seek of the health_customer_latest index per customer and window.
    (Reading every snapshot of both windows returned about 14 rows a customer once the nightly runs had filled them,
    each with its JSON.)"""
    windows = {}
    for days in formulas.TREND_WINDOWS:
        end = now - timedelta(days=days)
        windows[days] = Subquery(
            CustomerHealthSnapshot.objects.filter(
                customer_id=OuterRef("pk"),
                computed_at__gt=end - timedelta(days=TREND_TOLERANCE_DAYS),
                computed_at__lte=end,
            )
            .order_by("-computed_at", "-id")
            .values("components")[:1],
            output_field=models.JSONField(),
        )
    rows = (
        Customer.objects.filter(pk__in=ids)
        .order_by()
        .annotate(**{f"back_{days}": window for days, window in windows.items()})
        .values_list("pk", "created_at", "currency", *(f"back_{days}" for days in windows))
    )
    for pk, created_at, currency, *back_then in rows:
        found = zip(windows, back_then, strict=True)
        yield pk, created_at, currency, {days: components for days, components in found if components is not None}


def _package_grew_90_days(ids: list[int], *, currency: dict[int, str], since_90) -> set[int]:
    """Customers moved to a dearer package in 90 days, in three queries: package changes from the audit trail
    (immediate ones dated when made; scheduled ones when applied), then the active list prices of the packages
    involved. Packages are ranked as the change service ranks them: the list price of one period for the seats after
    the change, at the interval after the change (else the one before), in the customer's currency."""
    moves = []  # (customer, from slug, to slug, intervals to compare at, seats, scheduled change id or None)
    for cid, before, after, occurred_at in AuditEvent.objects.filter(
        customer_id__in=ids,
        action="subscription.package_changed",
        occurred_at__gte=since_90 - timedelta(days=PACKAGE_SCHEDULING_LOOKBACK_DAYS),
    ).values_list("customer_id", "before", "after", "occurred_at"):
        before, after = before or {}, after or {}
        if not before.get("package") or not after.get("package") or before["package"] == after["package"]:
            continue
        scheduled = None if after.get("immediate") else after.get("scheduled_change_id")
        if scheduled is None and (not after.get("immediate") or occurred_at < since_90):
            continue
        intervals = [i for i in (after.get("interval"), before.get("interval")) if i]
        moves.append((cid, before["package"], after["package"], intervals, int(after.get("seats") or 0), scheduled))
    if not moves:
        return set()
    scheduled_ids = [move[5] for move in moves if move[5] is not None]
    applied = set(
        ScheduledChange.objects.filter(pk__in=scheduled_ids, applied_at__gte=since_90).values_list("pk", flat=True)
        if scheduled_ids
        else []
    )
    slugs = {slug for move in moves for slug in move[1:3]}
    prices = {
        (slug, price_currency, interval): (flat, seat, included)
        for slug, included, price_currency, interval, flat, seat in Price.objects.filter(
            package__slug__in=slugs, is_active=True
        ).values_list(
            "package__slug", "package__included_seats", "currency", "interval", "flat_amount_minor", "seat_amount_minor"
        )
    }

    def amount(slug: str, cur: str, interval: str, seats: int) -> int | None:
        price = prices.get((slug, cur, interval))
        if price is None:
            return None
        flat, seat, included = price
        return formulas.package_list_amount(
            flat_amount_minor=flat, seat_amount_minor=seat, included_seats=included, seats=seats
        )

    grew = set()
    for cid, from_slug, to_slug, intervals, seats, scheduled in moves:
        if scheduled is not None and scheduled not in applied:
            continue
        cur = currency.get(cid, "")
        for interval in intervals:  # the first interval both packages have a list price at
            from_amount, to_amount = amount(from_slug, cur, interval, seats), amount(to_slug, cur, interval, seats)
            if from_amount is not None and to_amount is not None:
                if formulas.package_grew(from_amount=from_amount, to_amount=to_amount):
                    grew.add(cid)
                break
    return grew


def health_components(facts: dict, effort_scores: list[int]) -> dict[str, int | None]:
    return {
        "seat_adoption": formulas.seat_adoption(assigned=facts["seats_assigned"], purchased=facts["seats_purchased"]),
        "activity": formulas.activity(members=facts["members"], active_members=facts["active_members"]),
        "payment": formulas.payment(
            overdue_invoices=facts["overdue_invoices"],
            failed_payments=facts["failed_payments"],
            days_past_due=facts["days_past_due"],
        ),
        "enablement": formulas.enablement(failed_runs=facts["failed_runs"], slow_runs=facts["slow_runs"]),
        "friction": formulas.friction(
            held_invoices=facts["held_invoices"],
            credit_notes=facts["credit_notes"],
            billing_notes=facts["billing_notes"],
        ),
        "effort": formulas.effort(scores=effort_scores),
    }


TREND_WORDS = {"seat_adoption": "seat adoption", "activity": "activity"}


def _trend_phrase(facts: dict, component: str) -> str | None:
    """ "seat adoption fell from 80 % to 50 % in 90 days": the window (30 or 90 days) with the bigger notable fall
    (the shorter on a tie), or None when neither fell by TREND_NOTABLE_POINTS or more."""
    worst = None
    for days in formulas.TREND_WINDOWS:
        change = facts.get(f"{component}_trend_{days}_days")
        if change is not None and change <= -formulas.TREND_NOTABLE_POINTS and (worst is None or change < worst[0]):
            worst = (change, days)
    if worst is None:
        return None
    change, days = worst
    then = facts[f"{component}_{days}_days_ago"]
    return f"{TREND_WORDS[component]} fell from {then} % to {then + change} % in {days} days"


def health_explanation(facts: dict) -> str:
    """The facts that cost points, in words ("2 of 10 seats unassigned; 1 invoice overdue, 12 days past due"),
    including a notable fall of seat adoption or activity ("seat adoption fell from 80 % to 50 % in 90 days")."""
    parts = []
    for component in TREND_COMPONENTS:
        phrase = _trend_phrase(facts, component)
        if phrase:
            parts.append(phrase)
    unassigned = facts["seats_purchased"] - facts["seats_assigned"]
    if unassigned > 0:
        parts.append(f"{unassigned} of {facts['seats_purchased']} seats unassigned")
    inactive = facts["members"] - facts["active_members"]
    if inactive > 0:
        parts.append(f"{inactive} of {facts['members']} people not active in 30 days")
    if facts["overdue_invoices"]:
        parts.append(f"{facts['overdue_invoices']} invoice(s) overdue, {facts['days_past_due']} days past due")
    if facts["failed_payments"]:
        parts.append(f"{facts['failed_payments']} failed payment(s) in 30 days")
    if facts["failed_runs"] or facts["slow_runs"]:
        parts.append(f"{facts['failed_runs']} failed and {facts['slow_runs']} slow enablement run(s) in 30 days")
    if facts["held_invoices"]:
        parts.append(f"{facts['held_invoices']} invoice(s) held")
    if facts["credit_notes"]:
        parts.append(f"{facts['credit_notes']} credit note(s) in 90 days")
    if facts["billing_notes"]:
        parts.append(f"{facts['billing_notes']} billing note(s) by staff in 90 days")
    return "; ".join(parts) if parts else "Nothing stands out."


def customer_health_compute(
    *, customer_ids: list[int], effort_scores: dict[int, list[int]] | None = None
) -> list[CustomerHealthSnapshot]:
    """Score `customer_ids` (at most CHUNK_SIZE) and store one snapshot each; effort answers come from the caller
    (the survey lives in the portal layer, above billing)."""
    if len(customer_ids) > CHUNK_SIZE:
        raise ValueError(f"Compute at most {CHUNK_SIZE} customers per chunk.")
    weights = health_weights_current()
    component_weights = {k: weights[k] for k in formulas.COMPONENTS}
    now = clock.now()
    facts = customer_health_facts(customer_ids=customer_ids)
    snapshots = []
    for cid, customer_facts in facts.items():
        components = health_components(customer_facts, (effort_scores or {}).get(cid, []))
        for component in TREND_COMPONENTS:
            for days in formulas.TREND_WINDOWS:
                customer_facts[f"{component}_trend_{days}_days"] = formulas.trend(
                    now=components[component], then=customer_facts[f"{component}_{days}_days_ago"]
                )
        score = formulas.combine(components, component_weights).score
        stage = formulas.journey_stage(
            tenure_days=customer_facts["tenure_days"],
            live_subscriptions=customer_facts["live_subscriptions"],
            ever_subscribed=customer_facts["ever_subscribed"],
            entitlements_not_active=customer_facts["entitlements_not_active"],
            seats_grew_90_days=customer_facts["seats_grew_90_days"],
            package_grew_90_days=customer_facts["package_grew_90_days"],
            past_due=customer_facts["subscription_past_due"] or customer_facts["overdue_invoices"] > 0,
            score=score,
            at_risk_below=weights["at_risk_below"],
            seat_adoption=components["seat_adoption"],
        )
        snapshots.append(
            CustomerHealthSnapshot(
                customer_id=cid,
                computed_at=now,
                score=score,
                stage=stage,
                components=components,
                facts=customer_facts,
                weights=weights,
                explanation=health_explanation(customer_facts),
            )
        )
    with transaction.atomic():
        # The customers' rows are locked so two computations of one customer (nightly and event-driven) record a
        # stage change, and its customer.stage_changed event (outbox, same transaction), once and in order.
        # With them, each one's newest snapshot's stage: one index seek per customer (health_customer_latest), not
        # every snapshot the customer ever had (a nightly run adds one a day, so those grew with the year).
        previous = {cid: stage or "" for cid, stage in _newest_stages_locked().filter(pk__in=customer_ids)}
        changes = [
            JourneyStageChange(
                customer_id=snapshot.customer_id,
                from_stage=previous.get(snapshot.customer_id, ""),
                to_stage=snapshot.stage,
                changed_at=now,
            )
            for snapshot in snapshots
            if previous.get(snapshot.customer_id, "") != snapshot.stage
        ]
        JourneyStageChange.objects.bulk_create(changes)
        events_record_many(stage_change_event(change) for change in changes)
        return CustomerHealthSnapshot.objects.bulk_create(snapshots)


@prebuilt
def _newest_stages_locked():
    """(customer, stage of its newest snapshot) with the customers' rows locked (built once, as `_FACT_SHAPES`)."""
    newest_stage = (
        CustomerHealthSnapshot.objects.filter(customer_id=OuterRef("pk"))
        .order_by("-computed_at", "-id")
        .values("stage")[:1]
    )
    return (
        Customer.objects.select_for_update()
        .annotate(newest_stage=Subquery(newest_stage))
        .order_by("pk")
        .values_list("pk", "newest_stage")
    )


def health_weights_preview(*, weights: dict[str, int], at_risk_below: int) -> dict[str, list[int]]:
    """How the at-risk list would change under `weights` (no writes): rescoring each customer's newest snapshot's
    components. Returns {"joining": [customer ids], "leaving": [...], "at_risk": [...]} under the new weights.
    Raises HealthWeightsInvalid for weights formulas.weights_problems refuses."""
    problems = formulas.weights_problems(weights)
    if problems:
        raise HealthWeightsInvalid(" ".join(problems))
    current = health_weights_current()
    latest = {}
    for snapshot in CustomerHealthSnapshot.objects.order_by("customer_id", "-computed_at", "-id").only(
        "customer_id", "score", "components"
    ):
        latest.setdefault(snapshot.customer_id, snapshot)
    before, after = set(), set()
    for cid, snapshot in latest.items():
        if snapshot.score is not None and snapshot.score < current["at_risk_below"]:
            before.add(cid)
        score = formulas.combine(snapshot.components, weights).score
        if score is not None and score < at_risk_below:
            after.add(cid)
    return {"joining": sorted(after - before), "leaving": sorted(before - after), "at_risk": sorted(after)}


def health_weights_save(*, weights: dict[str, int], at_risk_below: int, actor) -> HealthWeights:
    """Store a new weight set (in force from the next computation), audited `health.weights_changed` with the
    weights before and after. Raises HealthWeightsInvalid (nothing saved)."""
    problems = formulas.weights_problems(weights)
    if not 0 <= at_risk_below <= 100:
        problems.append("The at-risk threshold is a score from 0 to 100.")
    if problems:
        raise HealthWeightsInvalid(" ".join(problems))
    before = health_weights_current()
    with transaction.atomic():
        row = HealthWeights.objects.create(
            **{k: int(v) for k, v in weights.items()}, at_risk_below=at_risk_below, created_by=actor
        )
        after = {name: getattr(row, name) for name in (*formulas.COMPONENTS, "at_risk_below")}
        audit_record(
            customer=None,
            action="health.weights_changed",
            actor=actor,
            obj=row,
            summary="Health score weights changed",
            before=before,
            after=after,
        )
    return row
