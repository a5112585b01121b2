"""Provisioning: what each customer is entitled to, what is switched on, and every attempt to reconcile the two.

Continuum computes the *desired* entitlements from live subscriptions; a provisioner backend *applies* them. An
Entitlement row carries both values, so "what did they buy" and "what is switched on" are always answerable and a
difference between them is, by definition, work to do (subscriptions.services.provisioning).
"""

from django.conf import settings
from django.db import models

from subscriptions.models.catalog import Package
from subscriptions.models.customers import Customer


class EntitlementKind(models.TextChoices):
    BOOLEAN = "boolean", "On/off"
    LIMIT = "limit", "A limit (integer)"
    SEATS = "seats", "Number of seats"
    USER_SEAT = "user_seat", "A person holds a seat"


class EntitlementState(models.TextChoices):
    PENDING = "pending", "Being switched on"
    ACTIVE = "active", "Active"
    REVOKING = "revoking", "Being switched off"
    REVOKED = "revoked", "Switched off"
    FAILED = "failed", "Failed"


# The only allowed state changes. A reconcile moves rows to pending/revoking when desired and applied differ, to
# active/revoked when the backend confirms, and to failed when it gives up; any state may be re-opened by a new change.
ENTITLEMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    EntitlementState.PENDING: frozenset(
        {EntitlementState.ACTIVE, EntitlementState.REVOKING, EntitlementState.REVOKED, EntitlementState.FAILED}
    ),
    EntitlementState.ACTIVE: frozenset({EntitlementState.PENDING, EntitlementState.REVOKING}),
    EntitlementState.REVOKING: frozenset(
        {EntitlementState.REVOKED, EntitlementState.PENDING, EntitlementState.ACTIVE, EntitlementState.FAILED}
    ),
    EntitlementState.REVOKED: frozenset({EntitlementState.PENDING}),
    EntitlementState.FAILED: frozenset(
        {EntitlementState.PENDING, EntitlementState.REVOKING, EntitlementState.ACTIVE, EntitlementState.REVOKED}
    ),
}


class Entitlement(models.Model):
    """One feature a customer is (or was) entitled to, or — with `user` set — one person holding a seat of a package.

    Values are integers: a limit or seat count as is, booleans and user seats as 1. `desired_value` is None when
    nothing grants the feature any more; `applied_value` is None when the backend has nothing switched on.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="entitlements")
    feature_key = models.CharField(max_length=80, help_text="e.g. seats, sso, api_calls_per_month, seat:team.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="seat_entitlements",
        help_text="Set for per-user seat entitlements (this person holds a seat of `package`).",
    )
    package = models.ForeignKey(Package, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    value_kind = models.CharField(max_length=10, choices=EntitlementKind.choices)
    desired_value = models.BigIntegerField(null=True, blank=True)
    applied_value = models.BigIntegerField(null=True, blank=True)
    granted_by = models.JSONField(default=list, blank=True, help_text='Sources, e.g. ["subscription:12", "addon:4"].')
    state = models.CharField(max_length=10, choices=EntitlementState.choices, default=EntitlementState.PENDING)
    error = models.TextField(blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer_id", "feature_key", "user_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "feature_key"],
                condition=models.Q(user__isnull=True),
                name="entitlement_unique_customer_feature",
            ),
            models.UniqueConstraint(
                fields=["customer", "feature_key", "user"],
                condition=models.Q(user__isnull=False),
                name="entitlement_unique_customer_feature_user",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    state__in=["pending", "active", "revoking", "revoked", "failed"],
                ),
                name="entitlement_state_valid",
            ),
        ]
        indexes = [models.Index(fields=["state", "customer"], name="entitlement_state_customer")]

    def __str__(self) -> str:
        who = f" for {self.user}" if self.user_id else ""
        return f"{self.feature_key}{who} ({self.state})"

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.feature_key, self.user_id)


class ProvisioningState(models.Model):
    """One row per customer: the lock a reconcile holds (select_for_update) so two runs never interleave."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="provisioning_state")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    runs = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"Provisioning state of {self.customer_id}"


class RunOutcome(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    APPLIED = "applied", "Applied"
    NOOP = "noop", "Nothing to change"
    SUPERSEDED = "superseded", "Covered by a later run"
    RETRYING = "retrying", "Failed, will retry"
    FAILED = "failed", "Failed permanently"


RUN_FINISHED_OUTCOMES = (RunOutcome.APPLIED, RunOutcome.NOOP, RunOutcome.SUPERSEDED, RunOutcome.FAILED)


class ProvisioningRun(models.Model):
    """One attempt to reconcile a customer's entitlements: queued when a change commits, filled in by the worker."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="provisioning_runs")
    trigger = models.CharField(max_length=200, blank=True, help_text="The change that asked for this run.")
    backend = models.CharField(max_length=20, blank=True)
    attempt = models.PositiveIntegerField(default=1)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When the triggering change committed.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True, help_text="From start to finish of this run.")
    outcome = models.CharField(max_length=12, choices=RunOutcome.choices, default=RunOutcome.QUEUED)
    diff = models.JSONField(default=list, blank=True, help_text="The changes pushed to the backend.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["customer", "-id"], name="provrun_customer_id"),
            models.Index(fields=["outcome", "customer"], name="provrun_outcome_customer"),
        ]

    def __str__(self) -> str:
        return f"Provisioning run {self.pk} of {self.customer_id}: {self.outcome}"
