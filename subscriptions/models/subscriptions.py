"""Subscriptions, their seats (an append-only ledger), add-ons and scheduled changes."""

from django.conf import settings
from django.db import models

from subscriptions.models.catalog import Interval, Package, Price
from subscriptions.models.customers import Customer


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", "Trial"
    ACTIVE = "active", "Active"
    PAST_DUE = "past_due", "Past due"
    CANCELED = "canceled", "Canceled"
    ENDED = "ended", "Ended"


# The only allowed status changes; subscriptions.services.lifecycle enforces this table.
# "canceled" means canceled immediately or at period end and no longer renewing; "ended" is final.
SUBSCRIPTION_TRANSITIONS: dict[str, frozenset[str]] = {
    SubscriptionStatus.TRIALING: frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELED}),
    SubscriptionStatus.ACTIVE: frozenset({SubscriptionStatus.PAST_DUE, SubscriptionStatus.CANCELED}),
    SubscriptionStatus.PAST_DUE: frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.CANCELED}),
    SubscriptionStatus.CANCELED: frozenset({SubscriptionStatus.ENDED}),
    SubscriptionStatus.ENDED: frozenset(),
}
LIVE_STATUSES = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


class Subscription(models.Model):
    """A customer's subscription to one base package.

    The price is snapshotted (flat/seat amounts, currency) at sale so catalog price changes never alter what an
    existing subscription pays until it is explicitly moved. `version` increases on every change: previews return
    it and apply refuses a stale one.
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    package = models.ForeignKey(Package, on_delete=models.PROTECT, related_name="subscriptions")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="subscriptions")
    interval = models.CharField(max_length=10, choices=Interval.choices)
    currency = models.CharField(max_length=3)
    flat_amount_minor = models.BigIntegerField()
    seat_amount_minor = models.BigIntegerField()
    included_seats = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.ACTIVE)
    seats = models.PositiveIntegerField()
    committed_seats = models.PositiveIntegerField(
        default=0, help_text="Annual commitment: seats cannot go below this mid-term."
    )
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    billing_anchor = models.DateTimeField(
        help_text=(
            "Every period boundary is this instant moved a whole number of intervals on, clamped to the month's last "
            "day (31 Jan → 28/29 Feb → 31 Mar). Set at sign-up, at trial end and when a new annual/monthly term "
            "starts; see subscriptions/periods.py."
        )
    )
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    cancel_reason = models.TextField(blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "current_period_end"], name="sub_status_period_end")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(current_period_end__gt=models.F("current_period_start")),
                name="subscription_period_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer} — {self.package} ({self.status})"


class SubscriptionAddon(models.Model):
    """An add-on package attached to a subscription, with its own price snapshot."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="addons")
    package = models.ForeignKey(Package, on_delete=models.PROTECT, related_name="+")
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    flat_amount_minor = models.BigIntegerField()
    quantity = models.PositiveIntegerField(default=1)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "package"],
                condition=models.Q(ended_at__isnull=True),
                name="addon_one_live_per_subscription_package",
            )
        ]

    def __str__(self) -> str:
        return f"{self.package} on {self.subscription_id}"


class ScheduledChangeKind(models.TextChoices):
    SEATS = "seats", "Seat decrease"
    PACKAGE = "package", "Package change"
    REMOVE_ADDON = "remove_addon", "Remove add-on"


class ScheduledChange(models.Model):
    """A change that takes effect at renewal (seat decrease, downgrade, add-on removal)."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="scheduled_changes")
    kind = models.CharField(max_length=20, choices=ScheduledChangeKind.choices)
    payload = models.JSONField(default=dict)
    effective_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    applied_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["effective_at", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.effective_at:%Y-%m-%d}"


class SeatLedgerEntry(models.Model):
    """Append-only: one row per change of the seat count, so the count at any moment is answerable."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="seat_ledger")
    seats_from = models.PositiveIntegerField()
    seats_to = models.PositiveIntegerField()
    reason = models.CharField(max_length=200)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    effective_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["effective_at", "id"]
        verbose_name_plural = "seat ledger entries"

    def __str__(self) -> str:
        return f"{self.seats_from} → {self.seats_to} at {self.effective_at:%Y-%m-%d %H:%M}"


class SeatAssignment(models.Model):
    """A purchased seat held by a member. Assigned ≤ purchased is enforced by the service under a row lock."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="seat_assignments")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="seat_assignments")
    assigned_at = models.DateTimeField(auto_now_add=True)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["assigned_at"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "user"], name="seat_assignment_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} holds a seat on {self.subscription_id}"


class SubscriptionChange(models.Model):
    """A change the customer (or staff on their behalf) applied, with exactly the lines its preview showed.

    Billing reads unbilled changes to invoice them (now, or on the next invoice). An idempotency key makes a
    repeated apply a no-op that returns the first result.
    """

    class Kind(models.TextChoices):
        SEATS = "seats", "Seat change"
        PACKAGE = "package", "Package change"
        ADD_ADDON = "add_addon", "Add-on added"
        REMOVE_ADDON = "remove_addon", "Add-on removed"
        CANCEL = "cancel", "Cancellation"
        REACTIVATE = "reactivate", "Cancellation undone"

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="changes")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    idempotency_key = models.CharField(max_length=100, null=True, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The preview as applied: lines, amount_due_now_minor, next_recurring_amount_minor, effective_at, currency.
    result = models.JSONField(default=dict)
    amount_due_now_minor = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    effective_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Set by billing once it has billed the change (proration invoice or pending items) or found nothing to bill:
    # the billing run's safety net reads only changes with an amount that are not settled (a partial index), so its
    # cost follows the changes still to bill, not every change ever made.
    billing_settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="subscription_change_idempotency",
            )
        ]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(billing_settled_at__isnull=True) & ~models.Q(amount_due_now_minor=0),
                name="subscription_change_unsettled",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.subscription_id}"
