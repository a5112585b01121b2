"""Reusable read queries for customers, memberships and subscriptions."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from subscriptions.models import LIVE_STATUSES, Customer, Membership, Subscription, User


def memberships_for_user(*, user: User) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("customer").order_by("customer__name"))


def subscriptions_live_for_customer(*, customer: Customer) -> QuerySet[Subscription]:
    return (
        Subscription.objects.filter(customer=customer, status__in=LIVE_STATUSES)
        .select_related("package")
        .order_by("created_at")
    )


# --- Provisioning (issue 5) ---------------------------------------------------------------------------------------


def entitlements_for_customer(customer: Customer) -> QuerySet:
    """Every entitlement the customer holds or is being granted or revoked (not long-revoked history rows).

    The REST API serves this (`GET /api/v1/entitlements/?customer=…`); with the built-in provisioner, rows whose
    state is active are what the product should switch on (`applied_value`).
    """
    from subscriptions.models import Entitlement

    return (
        Entitlement.objects.filter(customer=customer)
        .exclude(desired_value__isnull=True, applied_value__isnull=True)
        .select_related("user", "package")
        .order_by("user_id", "feature_key")
    )


def provisioning_runs_for_customer(customer: Customer, *, limit: int = 50) -> list:
    """The customer's enablement history, newest first."""
    from subscriptions.models import ProvisioningRun

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


def enablement_status(customer: Customer) -> EnablementStatus:
    """What the dashboard polls: is everything the customer bought switched on, and if not since when. Two queries."""
    from subscriptions.models import Entitlement, EntitlementState, ProvisioningRun, RunOutcome

    counts = dict.fromkeys(EntitlementState.values, 0)
    oldest_open = None
    items: list[EnablementItem] = []
    people: dict[str, int] = {}
    seat_errors: list[str] = []
    labels = dict(EntitlementState.choices)
    for feature_key, user_id, kind, desired, applied, state, error, updated_at in (
        Entitlement.objects.filter(customer=customer)
        .exclude(desired_value__isnull=True, applied_value__isnull=True, state=EntitlementState.REVOKED)
        .order_by("feature_key", "user_id")
        .values_list(
            "feature_key", "user_id", "value_kind", "desired_value", "applied_value", "state", "error", "updated_at"
        )
    ):
        counts[state] += 1
        if user_id is not None:
            people[state] = people.get(state, 0) + 1
            if error:
                seat_errors.append(error)
        else:
            items.append(
                EnablementItem(
                    name=_entitlement_label(feature_key, kind, desired if desired is not None else applied),
                    state=state,
                    state_label=labels[state],
                    detail=error,
                )
            )
        if state in (EntitlementState.PENDING, EntitlementState.REVOKING) and (
            oldest_open is None or updated_at < oldest_open
        ):
            oldest_open = updated_at
    # One query for the run history the panel needs. A successful run supersedes every run queued before it, so
    # the open runs are among the most recent ones.
    recent = list(
        ProvisioningRun.objects.filter(customer=customer)
        .order_by("-id")
        .values_list("queued_at", "started_at", "finished_at", "outcome", "error")[:RECENT_RUNS]
    )
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


def _entitlement_label(feature_key: str, kind: str, value: int | None) -> str:
    name = feature_key.replace("_", " ").capitalize()
    if name.lower() == "sso":
        name = "Single sign-on"
    if kind in ("limit", "seats") and value is not None:
        return f"{name}: {value:,}"
    return name
