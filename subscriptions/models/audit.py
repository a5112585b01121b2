"""The audit trail: who changed what, when, before and after, and why."""

from django.conf import settings
from django.db import models

from subscriptions.models.customers import Customer


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
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="audit_customer_created")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor or self.get_actor_kind_display()}"
