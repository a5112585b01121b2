"""Outbound event webhooks: the event outbox, customers' and staff's endpoints, and the delivery log.

These live in `subscriptions`, the lowest layer, because both subscriptions and billing services record events in the
same transaction as the change that caused them (docs/decisions.md "Outbound webhooks").
"""

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from subscriptions.models.customers import Customer
from subscriptions.secretbox import secret_decrypt, secret_encrypt


class EventType(models.TextChoices):
    """The catalogue (docs/webhooks.md; one JSON schema per type in subscriptions/webhook_schemas.py)."""

    SUBSCRIPTION_CREATED = "subscription.created"
    SUBSCRIPTION_UPDATED = "subscription.updated"
    SUBSCRIPTION_CANCELED = "subscription.canceled"
    ENTITLEMENT_UPDATED = "entitlement.updated"
    INVOICE_ISSUED = "invoice.issued"
    INVOICE_HELD = "invoice.held"
    INVOICE_PAID = "invoice.paid"
    INVOICE_VOIDED = "invoice.voided"
    INVOICE_OVERDUE = "invoice.overdue"
    CREDIT_NOTE_ISSUED = "credit_note.issued"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    TAX_EXEMPTION_SUBMITTED = "tax_exemption.submitted"
    TAX_EXEMPTION_DECIDED = "tax_exemption.decided"
    TAX_EXEMPTION_EXPIRING = "tax_exemption.expiring"
    MEMBER_ADDED = "member.added"
    MEMBER_REMOVED = "member.removed"
    # Internal (staff endpoints only; docs/decisions.md "Journey stages are internal"): never sent to a customer's
    # own endpoint, never offered to customers.
    CUSTOMER_STAGE_CHANGED = "customer.stage_changed"
    # Sent only by "send test event", to one endpoint; never fanned out.
    WEBHOOK_TEST = "webhook_endpoint.test"


# Types only staff (internal, customer-less) endpoints receive; a customer's endpoint never gets one, even with "*".
INTERNAL_EVENT_TYPES = (EventType.CUSTOMER_STAGE_CHANGED.value,)
# What a customer's endpoint may subscribe to (portal, API); staff endpoints may also choose the internal types.
SUBSCRIBABLE_EVENT_TYPES = tuple(
    value for value in EventType.values if value != EventType.WEBHOOK_TEST and value not in INTERNAL_EVENT_TYPES
)
STAFF_SUBSCRIBABLE_EVENT_TYPES = (*SUBSCRIBABLE_EVENT_TYPES, *INTERNAL_EVENT_TYPES)


def _event_public_id() -> str:
    return "evt_" + secrets.token_hex(12)


class Event(models.Model):
    """One row of the outbox: written in the transaction of the change, delivered after commit (at least once)."""

    public_id = models.CharField(max_length=40, unique=True, default=_event_public_id, editable=False)
    type = models.CharField(max_length=60, choices=EventType.choices)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    object_type = models.CharField(max_length=40)
    object_id = models.CharField(max_length=64)
    sequence = models.PositiveBigIntegerField(
        help_text="Increases with every event about the same object: receivers drop an event older than one seen."
    )
    data = models.JSONField(default=dict, help_text="A snapshot of the object when the event happened.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When its deliveries were created; empty rows are re-scanned (outbox)."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "-sequence"], name="event_object_sequence"),
            models.Index(fields=["customer", "-created_at"], name="event_customer_created"),
            models.Index(
                fields=["created_at"], name="event_undispatched", condition=models.Q(dispatched_at__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.public_id}"


def webhook_secret_new() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_secret_encrypted_new() -> str:
    """A new signing secret, encrypted: the default of a new endpoint, so no row ever holds one in clear."""
    return secret_encrypt(webhook_secret_new())


class WebhookEndpoint(models.Model):
    """Where a customer's (or, with no customer, staff's: every customer's) events are POSTed."""

    customer = models.ForeignKey(
        Customer,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        help_text="Empty: an internal endpoint that receives the events of every customer (staff only).",
    )
    url = models.CharField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(default=list, help_text='Event types it receives, e.g. ["invoice.paid"].')
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    # The secret is needed in clear to sign, so it is encrypted (subscriptions/secretbox.py), not hashed; the owner
    # sees it once, when it is made, then only its prefix.
    secret_encrypted = models.TextField(default=webhook_secret_encrypted_new, editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer_id", "id"]

    def __str__(self) -> str:
        return self.url

    def wants(self, *, event_type: str, customer_id: int | None) -> bool:
        """Whether this endpoint receives an event of this type about this customer: a customer's endpoint only its
        own customer's events and never an internal one (staff endpoints only, even with "*"); then "*" or the
        type. The one rule for the fan-out and for the outbox deciding whether an event needs one."""
        if self.customer_id is not None and (self.customer_id != customer_id or event_type in INTERNAL_EVENT_TYPES):
            return False
        return "*" in self.event_types or event_type in self.event_types

    @property
    def secret(self) -> str:
        """The signing secret in clear (for signing, and for showing once right after it is made)."""
        return secret_decrypt(self.secret_encrypted)

    @secret.setter
    def secret(self, value: str) -> None:
        self.secret_encrypted = secret_encrypt(value)

    @property
    def previous_secret(self) -> str:
        return secret_decrypt(self.previous_secret_encrypted) if self.previous_secret_encrypted else ""

    @previous_secret.setter
    def previous_secret(self, value: str) -> None:
        self.previous_secret_encrypted = secret_encrypt(value) if value else ""

    @property
    def secret_hint(self) -> str:
        return self.secret[:10] + "…"

    def signing_secrets(self, now=None) -> list[str]:
        """The secrets a delivery is signed with: the current one and, during a rotation's overlap, the old one."""
        now = now or timezone.now()
        keys = [self.secret]
        if self.previous_secret_encrypted and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            keys.append(self.previous_secret)
        return keys


class DeliveryKind(models.TextChoices):
    EVENT = "event", "Event"
    RESEND = "resend", "Resent"
    TEST = "test", "Test event"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Delivered"
    FAILED = "failed", "Failed (gave up)"


class WebhookDelivery(models.Model):
    """One event to one endpoint, tried until it succeeds or its retry window (3 days) ends."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(max_length=10, choices=DeliveryKind.choices, default=DeliveryKind.EVENT)
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="A worker is sending it until then; after that (a killed worker) anyone may."
    )
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # The fan-out of one event to one endpoint happens once, however often the outbox is re-scanned.
            models.UniqueConstraint(
                fields=["endpoint", "event"], condition=models.Q(kind="event"), name="delivery_once_per_event"
            ),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], name="delivery_pending_due", condition=models.Q(status="pending")),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_created"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: what the receiver answered, how fast, and the start of its answer."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    succeeded = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True, help_text="The first 1 KB of the response body.")
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.attempted_at:%Y-%m-%d %H:%M:%S}: {self.status_code or self.error}"
