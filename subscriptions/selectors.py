"""Reusable read queries for customers, memberships and subscriptions."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import models
from django.db.models import F, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from subscriptions.models import (
    LIVE_STATUSES,
    AuditEvent,
    Customer,
    Entitlement,
    EntitlementKind,
    EntitlementState,
    Membership,
    Package,
    PackageComponent,
    Price,
    ProvisioningRun,
    RunOutcome,
    ScheduledChange,
    ScheduledChangeKind,
    SeatAssignment,
    SeatLedgerEntry,
    Sku,
    SkuKind,
    Subscription,
    SubscriptionChange,
    SubscriptionStatus,
    User,
)


def memberships_for_user(*, user: User) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("customer").order_by("customer__name"))


# --- catalog, subscriptions, seats, people, audit ------------------------------------------------------


def package_skus(*, package_ids) -> dict[int, dict[str, tuple[str, str]]]:
    """{package id: {SKU kind: (SKU code, tax category)}} for each of `package_ids`, answering as
    `subscriptions.services.terms.sku_for(package, kind)` does (a seat line without a per-seat SKU uses the flat
    fee's; otherwise the package's first component by SKU code; otherwise ("", "saas")), in one plain query."""
    components: dict[int, list[tuple[str, str, str]]] = {package_id: [] for package_id in package_ids}
    if not components:
        return {}
    for package_id, code, kind, category in (
        PackageComponent.objects.filter(package_id__in=components)
        .order_by("package_id", "sku__code")
        .values_list("package_id", "sku__code", "sku__kind", "sku__tax_category")
    ):
        components[package_id].append((code, kind, category))
    result = {}
    for package_id, rows in components.items():
        first = (rows[0][0], rows[0][2]) if rows else ("", "saas")
        by_kind: dict[str, tuple[str, str]] = {}
        for code, kind, category in rows:
            by_kind.setdefault(kind, (code, category))
        skus = {kind: by_kind.get(kind, first) for kind in SkuKind.values}
        if SkuKind.RECURRING_PER_SEAT not in by_kind:
            skus[SkuKind.RECURRING_PER_SEAT] = by_kind.get(SkuKind.RECURRING_FLAT, first)
        result[package_id] = skus
    return result


class JourneyStage(models.TextChoices):
    ONBOARDING = "onboarding", "Onboarding"
    ADOPTING = "adopting", "Adopting"
    ESTABLISHED = "established", "Established"
    AT_RISK = "at_risk", "At risk"
    CHURNED = "churned", "Churned"


ONBOARDING_DAYS = 30
ESTABLISHED_DAYS = 90
ESTABLISHED_SEAT_USE = Decimal("0.5")


def customer_journey_stage(customer: Customer, *, as_of: datetime | None = None) -> str:
    """The customer's journey stage, derived from their subscriptions (never typed in). First rule that matches:

    1. **churned** — they had a subscription and none is live (trialing, active or past due) any more.
    2. **at_risk** — a live subscription is past due, or set to cancel at the period end.
    3. **onboarding** — no subscription yet, a subscription in trial, or their first subscription is less than
       30 days old.
    4. **established** — subscribed for at least 90 days and at least half of the purchased seats are assigned.
    5. **adopting** — everyone else: paying, but young (30–90 days) or using fewer than half of their seats.
    """
    as_of = as_of or timezone.now()
    subscriptions = list(Subscription.objects.filter(customer=customer).order_by("created_at"))
    if not subscriptions:
        return JourneyStage.ONBOARDING
    live = [s for s in subscriptions if s.status in LIVE_STATUSES]
    if not live:
        return JourneyStage.CHURNED
    if any(s.status == SubscriptionStatus.PAST_DUE or s.cancel_at_period_end for s in live):
        return JourneyStage.AT_RISK
    age = as_of - subscriptions[0].created_at
    if any(s.status == SubscriptionStatus.TRIALING for s in live) or age < timedelta(days=ONBOARDING_DAYS):
        return JourneyStage.ONBOARDING
    seats = sum(s.seats for s in live)
    assigned = SeatAssignment.objects.filter(subscription__in=live).count()
    if age >= timedelta(days=ESTABLISHED_DAYS) and seats and Decimal(assigned) / Decimal(seats) >= ESTABLISHED_SEAT_USE:
        return JourneyStage.ESTABLISHED
    return JourneyStage.ADOPTING


def subscription_for_customer(*, customer: Customer) -> Subscription | None:
    """The customer's current subscription: the newest live one, else the newest of any status, else None."""
    queryset = Subscription.objects.filter(customer=customer).select_related("package", "price")
    return (
        queryset.filter(status__in=LIVE_STATUSES).order_by("-created_at", "-pk").first()
        or queryset.order_by("-created_at", "-pk").first()
    )


def seats_assigned_count(*, subscription: Subscription) -> int:
    return SeatAssignment.objects.filter(subscription=subscription).count()


def seats_at(*, subscription: Subscription, moment: datetime) -> int:
    """The purchased seat count at `moment`, answered from the append-only seat ledger (0 before it started)."""
    entry = (
        SeatLedgerEntry.objects.filter(subscription=subscription, effective_at__lte=moment)
        .order_by("-effective_at", "-pk")
        .first()
    )
    return entry.seats_to if entry else 0


@dataclass(frozen=True)
class SeatsProvisioned:
    purchased: int  # the subscription's seats now
    applied: int  # what provisioning has actually switched on (0 when never applied)


def seats_provisioned_for_subscriptions(*, subscription_ids) -> dict[int, SeatsProvisioned]:
    """Seats purchased and actually provisioned now (the customer's seat entitlement) per subscription.

    Only subscriptions whose seats are a seat entitlement of their own are answered: when one entitlement adds up
    the seats of several subscriptions, or a subscription feeds several seat entitlements, its own share is not
    knowable and it is left out (callers fall back to the seat ledger). Two queries.
    """
    purchased, customer_ids = {}, set()
    for pk, seats, customer_id in Subscription.objects.filter(pk__in=set(subscription_ids)).values_list(
        "pk", "seats", "customer_id"
    ):
        purchased[pk] = seats
        customer_ids.add(customer_id)
    found: dict[int, list[int]] = {}
    # The customers' ids as values, not a subquery: with a subquery SQLite walks the user_id index for "user IS
    # NULL" (every customer's customer-level rows, growing with the base) instead of the (customer, feature) one.
    rows = Entitlement.objects.filter(
        user__isnull=True, value_kind=EntitlementKind.SEATS, customer_id__in=customer_ids
    ).values_list("granted_by", "applied_value")
    for granted_by, applied in rows:
        sources = {
            int(source.split(":", 1)[1])
            for source in granted_by
            if source.startswith("subscription:") and source.split(":", 1)[1].isdigit()
        }
        if len(sources) == 1 and (subscription_id := next(iter(sources))) in purchased:
            found.setdefault(subscription_id, []).append(applied or 0)
    return {
        subscription_id: SeatsProvisioned(purchased[subscription_id], values[0])
        for subscription_id, values in found.items()
        if len(values) == 1
    }


def packages_public(*, currency: str | None = None, interval: str | None = None) -> list[Package]:
    """Active public base packages in display order, with components, SKUs, active prices and add-ons prefetched.

    With `currency` (and `interval`), only packages that have an active price there; `package.active_prices` holds
    the matching active prices either way.
    """
    price_filter = Q(is_active=True)
    if currency:
        price_filter &= Q(currency=currency)
    if interval:
        price_filter &= Q(interval=interval)
    queryset = Package.objects.filter(is_active=True, is_public=True, is_addon=False)
    if currency or interval:
        scoped = Q(prices__is_active=True)
        if currency:
            scoped &= Q(prices__currency=currency)
        if interval:
            scoped &= Q(prices__interval=interval)
        queryset = queryset.filter(scoped).distinct()
    return list(
        queryset.order_by("display_order", "name").prefetch_related(
            Prefetch("components", queryset=PackageComponent.objects.select_related("sku").order_by("sku__code")),
            Prefetch("prices", queryset=Price.objects.filter(price_filter), to_attr="active_prices"),
            Prefetch(
                "addons",
                queryset=Package.objects.filter(is_active=True, is_public=True).order_by("display_order", "name"),
            ),
            "change_targets",
        )
    )


def audit_for_customer(*, customer: Customer, limit: int | None = 100) -> list[AuditEvent]:
    """The customer's audit trail, most recent first by when things happened, with the actor loaded."""
    queryset = AuditEvent.objects.filter(customer=customer).select_related("actor").order_by("-occurred_at", "-pk")
    return list(queryset[:limit] if limit else queryset)


# --- Provisioning ---------------------------------------------------------------------------------------


def feature_label_subquery(*, feature_ref: str = "feature_key"):
    """The catalog's customer-facing label of the feature whose key is in `feature_ref` (an OuterRef name): the
    `feature_label` of a SKU granting it, so a list of entitlements carries its names in the same query."""
    return Subquery(
        Sku.objects.filter(feature_key=OuterRef(feature_ref))
        .exclude(feature_label="")
        .order_by("code")
        .values("feature_label")[:1]
    )


def feature_name(feature_key: str, label: str | None) -> str:
    """How a customer reads a feature: the catalog's label (`Sku.feature_label`). Only a feature the catalog has not
    labelled yet — `manage.py check_catalog` reports it — falls back to its key, made readable."""
    return label or feature_key.replace("_", " ").capitalize()


def entitlement_name(entitlement) -> str:
    """An entitlement (from `entitlements_for_customer`) in the customer's words: its feature's name, or for a
    person's seat "Seat on Team"."""
    if entitlement.user_id is not None:
        return f"Seat on {entitlement.package.name}" if entitlement.package_id else "Seat"
    return feature_name(entitlement.feature_key, getattr(entitlement, "feature_label", None))


def entitlements_for_customer(customer: Customer) -> QuerySet:
    """Every entitlement the customer holds or is being granted or revoked (not long-revoked history rows), each
    annotated with `feature_label` (see `feature_name`).

    The REST API serves this (`GET /api/v1/entitlements/?customer=…`); with the built-in provisioner, rows whose
    state is active are what the product should switch on (`applied_value`).
    """
    return (
        Entitlement.objects.filter(customer=customer)
        .exclude(desired_value__isnull=True, applied_value__isnull=True)
        .select_related("user", "package")
        .annotate(feature_label=feature_label_subquery())
        .order_by("user_id", "feature_key")
    )


def provisioning_runs_for_customer(customer: Customer, *, limit: int = 50) -> list:
    """The customer's enablement history, newest first."""
    return list(ProvisioningRun.objects.filter(customer=customer).order_by("-id")[:limit])


RECENT_RUNS = 20


@dataclass(frozen=True)
class EnablementItem:
    """One line of the dashboard's enablement panel."""

    name: str
    state: str  # an EntitlementState value
    state_label: str
    detail: str = ""


@dataclass(frozen=True)
class EnablementStatus:
    state: str  # "active" | "pending" | "failed" | "none"
    items: tuple[EnablementItem, ...]
    total: int
    active: int
    pending: int
    failed: int
    pending_since: datetime | None
    last_run_at: datetime | None
    last_time_taken_ms: int | None  # from the change committing to it being applied, for the last applied run
    last_error: str

    @property
    def all_active(self) -> bool:
        return self.state == "active"


def _enablement_rows(customer: Customer) -> tuple[list[tuple], list[tuple]]:
    """The rows `enablement_status` reads, in ONE query (the dashboard's 10-query budget has no slot for two): the
    customer's live entitlements (feature key, label, user, kind, desired, applied, state, error, updated_at), sorted
    by feature and user, and its `RECENT_RUNS` newest provisioning runs (queued, started, finished, outcome, error),
    newest first. A UNION ALL of two `values()`: every column is a named annotation in the same order in both
    branches (so they line up), each branch padded with NULLs for the other's; the first branch's NULLs are typed
    for the converters, the second's untyped so PostgreSQL takes the first branch's types. The runs' LIMIT is a
    filter (id ≥ the RECENT_RUNS-th newest id), because SQLite allows no LIMIT inside a compound statement."""
    typed_null = {
        "run_id": models.BigIntegerField(),
        "queued_at": models.DateTimeField(),
        "started_at": models.DateTimeField(),
        "finished_at": models.DateTimeField(),
        "outcome": models.TextField(),
    }
    entitlements = (
        Entitlement.objects.filter(customer=customer)
        .exclude(desired_value__isnull=True, applied_value__isnull=True, state=EntitlementState.REVOKED)
        .order_by()
        .values(
            row_kind=Value("e"),
            e_feature_key=F("feature_key"),
            e_label=feature_label_subquery(),
            e_user=F("user_id"),
            e_value_kind=F("value_kind"),
            e_desired=F("desired_value"),
            e_applied=F("applied_value"),
            e_entitlement_state=F("state"),
            row_error=F("error"),
            e_updated=F("updated_at"),
            **{f"r_{name}": Value(None, output_field=field) for name, field in typed_null.items()},
        )
    )
    untyped = Value(None, output_field=models.TextField())
    runs = ProvisioningRun.objects.filter(customer=customer)
    oldest_recent = runs.order_by("-id").values("id")[RECENT_RUNS - 1 : RECENT_RUNS]
    runs = (
        runs.filter(id__gte=Coalesce(Subquery(oldest_recent), 0))
        .order_by()
        .values(
            row_kind=Value("r"),
            e_feature_key=untyped,
            e_label=untyped,
            e_user=untyped,
            e_value_kind=untyped,
            e_desired=untyped,
            e_applied=untyped,
            e_entitlement_state=untyped,
            row_error=F("error"),
            e_updated=untyped,
            r_run_id=F("id"),
            r_queued_at=F("queued_at"),
            r_started_at=F("started_at"),
            r_finished_at=F("finished_at"),
            r_outcome=F("outcome"),
        )
    )
    entitlement_rows, run_rows = [], []
    for row in entitlements.union(runs, all=True):
        if row["row_kind"] == "e":
            entitlement_rows.append(
                (
                    row["e_feature_key"],
                    row["e_label"],
                    row["e_user"],
                    row["e_value_kind"],
                    row["e_desired"],
                    row["e_applied"],
                    row["e_entitlement_state"],
                    row["row_error"],
                    row["e_updated"],
                )
            )
        else:
            run_rows.append(row)
    entitlement_rows.sort(key=lambda r: (r[0], r[2] is not None, r[2] or 0))
    run_rows.sort(key=lambda r: -r["r_run_id"])
    return entitlement_rows, [
        (r["r_queued_at"], r["r_started_at"], r["r_finished_at"], r["r_outcome"], r["row_error"]) for r in run_rows
    ]


def enablement_status(customer: Customer) -> EnablementStatus:
    """What the dashboard polls: is everything the customer bought switched on, and if not since when. One query."""
    counts = dict.fromkeys(EntitlementState.values, 0)
    oldest_open = None
    items: list[EnablementItem] = []
    people: dict[str, int] = {}
    seat_errors: list[str] = []
    labels = dict(EntitlementState.choices)
    # A successful run supersedes every run queued before it, so the open runs are among the most recent ones.
    entitlement_rows, recent = _enablement_rows(customer)
    for feature_key, label, user_id, kind, desired, applied, state, error, updated_at in entitlement_rows:
        counts[state] += 1
        if user_id is not None:
            people[state] = people.get(state, 0) + 1
            if error:
                seat_errors.append(error)
        else:
            items.append(
                EnablementItem(
                    name=_entitlement_label(
                        feature_name(feature_key, label), kind, desired if desired is not None else applied
                    ),
                    state=state,
                    state_label=labels[state],
                    detail=error,
                )
            )
        if state in (EntitlementState.PENDING, EntitlementState.REVOKING) and (
            oldest_open is None or updated_at < oldest_open
        ):
            oldest_open = updated_at
    open_runs = [r for r in recent if r[3] in (RunOutcome.QUEUED, RunOutcome.RUNNING)][-1:]
    if not open_runs and recent and recent[0][3] == RunOutcome.RETRYING:
        open_runs = recent[:1]  # between two attempts: waiting for the retry
    open_runs = [(r[0], r[3], r[4]) for r in open_runs]
    last = next((r for r in recent if r[3] in (RunOutcome.APPLIED, RunOutcome.FAILED)), None)
    pending = counts[EntitlementState.PENDING] + counts[EntitlementState.REVOKING]
    pending_since = oldest_open
    if open_runs and open_runs[0][0] and (pending_since is None or open_runs[0][0] < pending_since):
        pending_since = open_runs[0][0]
    if counts[EntitlementState.FAILED]:
        state = "failed"
    elif pending or open_runs:
        state = "pending"
    elif counts[EntitlementState.ACTIVE]:
        state = "active"
    else:
        state = "none"
    time_taken = None
    last_error = ""
    if last is not None:
        queued_at, started_at, finished_at, outcome, error = last
        began = queued_at or started_at
        if outcome == RunOutcome.APPLIED and began and finished_at:
            time_taken = max(0, int((finished_at - began).total_seconds() * 1000))
        if outcome == RunOutcome.FAILED:
            last_error = error
    if open_runs and open_runs[0][1] == RunOutcome.RETRYING:
        last_error = open_runs[0][2]
    if people:
        worst = next(
            s
            for s in (
                EntitlementState.FAILED,
                EntitlementState.PENDING,
                EntitlementState.REVOKING,
                EntitlementState.ACTIVE,
                EntitlementState.REVOKED,
            )
            if people.get(s)
        )
        held = sum(n for s, n in people.items() if s != EntitlementState.REVOKED)
        items.append(
            EnablementItem(
                name=f"Seats assigned to {held} {'person' if held == 1 else 'people'}",
                state=worst,
                state_label=labels[worst],
                detail=seat_errors[0] if seat_errors else "",
            )
        )
    if open_runs and not pending and not counts[EntitlementState.FAILED]:
        items.append(
            EnablementItem(
                name="Your latest change",
                state=EntitlementState.PENDING,
                state_label=labels[EntitlementState.PENDING],
                detail=last_error,
            )
        )
    return EnablementStatus(
        state=state,
        items=tuple(items),
        total=sum(counts[s] for s in counts if s != EntitlementState.REVOKED),
        active=counts[EntitlementState.ACTIVE],
        pending=pending,
        failed=counts[EntitlementState.FAILED],
        pending_since=pending_since,
        last_run_at=last[2] if last else None,
        last_time_taken_ms=time_taken,
        last_error=last_error,
    )


def _entitlement_label(name: str, kind: str, value: int | None) -> str:
    # "API calls per month: 100,000", "Seats: 12"; an on/off feature is just its name ("Single sign-on").
    if kind in ("limit", "seats") and value is not None:
        return f"{name}: {value:,}"
    return name


@dataclass(frozen=True)
class PackageTimeline:
    """Which package a subscription was on when: `(from, package slug)` steps in time order."""

    steps: tuple[tuple[datetime, str], ...]
    current: str
    initial: str = ""  # the package before the first step, when the first step says (an immediate change does)

    def at(self, moment: datetime | None) -> str:
        """The package in force at `moment`: before the first step the one it replaced (else the first step's); the
        current one with no history."""
        if moment is None or not self.steps:
            return self.current
        package = self.initial or self.steps[0][1]
        for since, slug in self.steps:
            if since > moment:
                break
            package = slug
        return package


def package_timelines_for_subscriptions(*, subscription_ids) -> dict[int, PackageTimeline]:
    """For each subscription, the packages it was on over time, from its own records (four queries, any count):
    the package it was created with (audit), immediate package changes (audit, dated by the change's effective
    time) and scheduled package changes applied at a period boundary. Exports label a line with the package in
    force when its service began, not the package the customer is on today."""
    ids = sorted(set(subscription_ids))
    if not ids:
        return {}
    steps: dict[int, list[tuple[datetime, str, str]]] = {pk: [] for pk in ids}  # (since, package, package before)
    audits = AuditEvent.objects.filter(
        object_type="subscription",
        object_id__in=[str(pk) for pk in ids],
        action__in=["subscription.created", "subscription.package_changed"],
    ).values_list("object_id", "action", "before", "after", "occurred_at")
    change_times = dict(
        SubscriptionChange.objects.filter(subscription_id__in=ids, kind=SubscriptionChange.Kind.PACKAGE).values_list(
            "pk", "effective_at"
        )
    )
    for object_id, action, before, after, occurred_at in audits:
        after = after or {}
        if action == "subscription.package_changed" and not after.get("immediate"):
            continue  # scheduled: counted when it is applied (below), not when it was asked for
        if after.get("package"):
            since = change_times.get(after.get("change_id"), occurred_at)
            steps[int(object_id)].append((since, after["package"], (before or {}).get("package", "")))
    applied = ScheduledChange.objects.filter(
        subscription_id__in=ids, kind=ScheduledChangeKind.PACKAGE, applied_at__isnull=False
    ).values_list("subscription_id", "effective_at", "payload")
    for subscription_id, effective_at, payload in applied:
        if (payload or {}).get("package"):
            steps[subscription_id].append((effective_at, payload["package"], ""))
    current = dict(Subscription.objects.filter(pk__in=ids).values_list("pk", "package__slug"))
    timelines = {}
    for pk in ids:
        ordered = sorted(steps[pk], key=lambda step: step[0])
        initial = ordered[0][2] if ordered else ""  # what it was on before its first recorded change, if known
        timelines[pk] = PackageTimeline(
            steps=tuple((since, package) for since, package, _ in ordered), current=current.get(pk, ""), initial=initial
        )
    return timelines
