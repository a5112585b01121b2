"""The audit trail: who changed what, when, before and after, and why."""

from contextvars import ContextVar
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from subscriptions.models.customers import Customer

RECORDED_LATER_AFTER = timedelta(hours=1)

# Set by `subscriptions.services.audit.audit_occurred_at`: when the events recorded inside it happened.
OCCURRED_AT: ContextVar[datetime | None] = ContextVar("audit_occurred_at", default=None)


def occurred_now() -> datetime:
    """`AuditEvent.occurred_at` unless a caller says otherwise: now, or the moment set by `audit_occurred_at` — so
    every way of writing an event (audit_record, a bulk insert of AuditEvent rows) dates it alike."""
    return OCCURRED_AT.get() or timezone.now()


class ActorKind(models.TextChoices):
    CUSTOMER = "customer", "Customer user"
    STAFF = "staff", "Staff"
    SYSTEM = "system", "System"
    API = "api", "API key"


class AuditEvent(models.Model):
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="audit")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices, default=ActorKind.SYSTEM)
    action = models.CharField(max_length=80, help_text="e.g. subscription.seats_changed")
    object_type = models.CharField(max_length=80, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    summary = models.CharField(max_length=300, blank=True, help_text="One line, in the customer's words.")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    occurred_at = models.DateTimeField(
        default=occurred_now,
        help_text="When it happened (a bank transfer on the day it was paid); usually when it was recorded.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True, help_text="When it was recorded.")

    class Meta:
        # The trail reads in the order things happened; a payment recorded late sits on the day it was made.
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-created_at"], name="audit_customer_created"),
            models.Index(fields=["customer", "-occurred_at"], name="audit_customer_occurred"),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor or self.get_actor_kind_display()}"

    @property
    def recorded_later(self) -> bool:
        """Recorded well after it happened (a payment entered days later): worth saying when it was recorded."""
        return self.created_at - self.occurred_at > RECORDED_LATER_AFTER
