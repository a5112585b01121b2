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


@dataclass(frozen=True)
class EnablementStatus:
    state: str  # "active" | "pending" | "failed" | "none"
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
    """What the dashboard polls: is everything the customer bought switched on, and if not since when. 3 queries."""
    from subscriptions.models import Entitlement, EntitlementState, ProvisioningRun, RunOutcome

    counts = dict.fromkeys(EntitlementState.values, 0)
    oldest_open = None
    for state, updated_at in (
        Entitlement.objects.filter(customer=customer)
        .exclude(desired_value__isnull=True, applied_value__isnull=True, state=EntitlementState.REVOKED)
        .values_list("state", "updated_at")
    ):
        counts[state] += 1
        if state in (EntitlementState.PENDING, EntitlementState.REVOKING) and (
            oldest_open is None or updated_at < oldest_open
        ):
            oldest_open = updated_at
    open_runs = list(
        ProvisioningRun.objects.filter(
            customer=customer, outcome__in=[RunOutcome.QUEUED, RunOutcome.RUNNING, RunOutcome.RETRYING]
        )
        .order_by("id")
        .values_list("queued_at", "outcome", "error")[:1]
    )
    last = (
        ProvisioningRun.objects.filter(customer=customer, outcome__in=[RunOutcome.APPLIED, RunOutcome.FAILED])
        .order_by("-id")
        .values_list("queued_at", "started_at", "finished_at", "outcome", "error")
        .first()
    )
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
    return EnablementStatus(
        state=state,
        total=sum(counts[s] for s in counts if s != EntitlementState.REVOKED),
        active=counts[EntitlementState.ACTIVE],
        pending=pending,
        failed=counts[EntitlementState.FAILED],
        pending_since=pending_since,
        last_run_at=last[2] if last else None,
        last_time_taken_ms=time_taken,
        last_error=last_error,
    )
