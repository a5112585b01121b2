"""Payments: the link to Stripe customers, saved cards, every collection attempt, refunds, webhook events, dunning.

Continuum's invoices are the ledger of record; these rows record how money moved against them. Amounts are integer
minor units plus a currency, like the invoices they settle.
"""

from django.conf import settings
from django.db import models

from subscriptions.models import Customer


class StripeCustomer(models.Model):
    """Our customer ↔ Stripe's customer (its metadata carries `continuum_customer_id`)."""

    customer = models.OneToOneField(Customer, on_delete=models.PROTECT, related_name="stripe_link")
    stripe_customer_id = models.CharField(max_length=64, unique=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer_id"]

    def __str__(self) -> str:
        return f"{self.customer} = {self.stripe_customer_id}"


class PaymentMethod(models.Model):
    """A saved card (Stripe PaymentMethod). We keep only what the customer needs to recognise it."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="payment_methods")
    stripe_payment_method_id = models.CharField(max_length=64, unique=True)
    brand = models.CharField(max_length=30)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["customer_id", "-is_default", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=models.Q(is_default=True, removed_at__isnull=True),
                name="payment_method_one_default_per_customer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand.title()} •••• {self.last4}"

    @property
    def label(self) -> str:
        return f"{self.brand.title()} ending in {self.last4}, expires {self.exp_month:02d}/{self.exp_year}"


class PaymentKind(models.TextChoices):
    MANUAL = "manual", "Bank transfer (recorded by staff)"
    CARD = "card", "Card"


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # row written, request to Stripe not answered yet
    PROCESSING = "processing", "Processing"
    REQUIRES_ACTION = "requires_action", "Needs the customer (authentication)"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


# The only allowed status changes; billing.services.transitions enforces it (stale news is ignored, not applied).
# failed → succeeded exists because a PaymentIntent that failed can still be completed later (the customer confirms
# it on the pay-now page), and webhooks may report the failure after the success.
PAYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    PaymentStatus.PENDING: frozenset(
        {PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION, PaymentStatus.SUCCEEDED, PaymentStatus.FAILED}
    ),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED}),
    PaymentStatus.REQUIRES_ACTION: frozenset(
        {PaymentStatus.PROCESSING, PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED}
    ),
    PaymentStatus.FAILED: frozenset({PaymentStatus.PROCESSING, PaymentStatus.SUCCEEDED}),
    PaymentStatus.SUCCEEDED: frozenset(),
    PaymentStatus.CANCELED: frozenset(),
}


class Payment(models.Model):
    """One attempt to collect (part of) an invoice. (invoice, attempt) is unique: the same attempt can never be
    charged twice, whatever retries, duplicate tasks or double clicks happen; the Stripe idempotency key is derived
    from the same pair."""

    invoice = models.ForeignKey("billing.Invoice", on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payments")
    attempt = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=PaymentKind.choices)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=PaymentStatus.choices, default=PaymentStatus.PENDING)
    off_session = models.BooleanField(default=False, help_text="Automatic collection (customer not present).")
    payment_method = models.ForeignKey(
        PaymentMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="payments"
    )
    stripe_payment_intent_id = models.CharField(max_length=64, blank=True)
    stripe_charge_id = models.CharField(max_length=64, blank=True)
    reference = models.CharField(max_length=200, blank=True, help_text="Bank reference of a manual payment.")
    failure_code = models.CharField(max_length=60, blank=True)
    failure_message = models.CharField(max_length=300, blank=True)
    applied_at = models.DateTimeField(
        null=True, blank=True, help_text="When the amount was applied to the invoice (exactly once)."
    )
    disputed_at = models.DateTimeField(null=True, blank=True)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["invoice_id", "attempt"]
        indexes = [models.Index(fields=["customer", "-created_at"], name="payment_customer_created")]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "attempt"], name="payment_unique_invoice_attempt"),
            models.UniqueConstraint(
                fields=["stripe_payment_intent_id"],
                condition=~models.Q(stripe_payment_intent_id=""),
                name="payment_unique_payment_intent",
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="payment_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Payment {self.invoice_id}#{self.attempt} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        return f"continuum-invoice-{self.invoice_id}-attempt-{self.attempt}"


class RefundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


# The one table of refund status changes (billing.services.transitions enforces it). A refund Stripe accepted as
# pending counts as succeeded; Stripe may still report it failed later (e.g. the card was closed). A failed refund
# is final: the money is owed by bank transfer instead.
REFUND_TRANSITIONS: dict[str, frozenset[str]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset({RefundStatus.FAILED}),
    RefundStatus.FAILED: frozenset(),
}


class Refund(models.Model):
    """Money sent back for a credit note's `refund_due_minor`, at most one refund per credit note: to the card through
    Stripe (`stripe_refund_id`), or by bank transfer, which billing staff pay and record (`reference`)."""

    credit_note = models.OneToOneField("billing.CreditNote", on_delete=models.PROTECT, related_name="refund")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=RefundStatus.choices, default=RefundStatus.PENDING)
    stripe_refund_id = models.CharField(max_length=64, blank=True)
    reference = models.CharField(
        max_length=120, blank=True, help_text="Bank reference of a refund billing staff paid by transfer."
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    failure_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund of {self.amount_minor} {self.currency} for {self.credit_note_id}"

    @property
    def idempotency_key(self) -> str:
        return f"continuum-credit-note-{self.credit_note_id}-refund"


class ExternalRefund(models.Model):
    """A refund Stripe holds for one of our charges that Continuum did not make (e.g. from the Stripe dashboard),
    recorded once per Stripe refund id so billing staff are told once to issue a matching credit note, however many
    `charge.refunded` events arrive, in whatever order. `status` is Stripe's own (pending, succeeded, failed,
    canceled, requires_action), as last read from Stripe."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="external_refunds")
    stripe_refund_id = models.CharField(max_length=64, unique=True)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"External refund {self.stripe_refund_id} ({self.amount_minor} {self.currency}, {self.status})"


class StripeEventStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored (nothing to do)"
    FAILED = "failed", "Failed"


# The one table of Stripe-event status changes (billing.services.transitions enforces it). A failed event may be
# processed again (task retry, sweep or staff retry) and fail again; processed and ignored events are final.
STRIPE_EVENT_TRANSITIONS: dict[str, frozenset[str]] = {
    StripeEventStatus.PENDING: frozenset(
        {StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED, StripeEventStatus.FAILED}
    ),
    StripeEventStatus.FAILED: frozenset(
        {StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED, StripeEventStatus.FAILED}
    ),
    StripeEventStatus.PROCESSED: frozenset(),
    StripeEventStatus.IGNORED: frozenset(),
}


class StripeEvent(models.Model):
    """A verified webhook event, stored before processing. Its Stripe id is unique: a redelivery is a no-op."""

    stripe_event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100, blank=True)
    stripe_created = models.BigIntegerField(help_text="The event's `created` (Unix seconds).")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=StripeEventStatus.choices, default=StripeEventStatus.PENDING)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["status", "received_at"], name="stripe_event_status_received")]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_event_id} ({self.status})"


class DunningStage(models.TextChoices):
    RETRYING = "retrying", "Retrying"
    PAST_DUE = "past_due", "Past due (grace period over)"
    RECOVERED = "recovered", "Recovered (paid)"
    EXHAUSTED = "exhausted", "Final attempt failed"
    CLOSED = "closed", "Closed (invoice voided or written off elsewhere)"


# The one table of dunning stage changes (billing.services.transitions enforces it; docs/payments.md, "Dunning").
# A new failure after a case ended (paid then disputed, say) starts it over at retrying.
DUNNING_TRANSITIONS: dict[str, frozenset[str]] = {
    DunningStage.RETRYING: frozenset(
        {DunningStage.PAST_DUE, DunningStage.RECOVERED, DunningStage.EXHAUSTED, DunningStage.CLOSED}
    ),
    DunningStage.PAST_DUE: frozenset({DunningStage.RECOVERED, DunningStage.EXHAUSTED, DunningStage.CLOSED}),
    DunningStage.EXHAUSTED: frozenset({DunningStage.RECOVERED, DunningStage.RETRYING}),
    DunningStage.RECOVERED: frozenset({DunningStage.RETRYING}),
    DunningStage.CLOSED: frozenset({DunningStage.RETRYING}),
}


class DunningCase(models.Model):
    """Collection of one open invoice after a failed payment: the retry schedule and how far it got."""

    invoice = models.OneToOneField("billing.Invoice", on_delete=models.CASCADE, related_name="dunning")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="dunning_cases")
    stage = models.CharField(max_length=20, choices=DunningStage.choices, default=DunningStage.RETRYING)
    started_at = models.DateTimeField()
    retries_done = models.PositiveSmallIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    past_due_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    final_action = models.CharField(max_length=20, blank=True, help_text="cancel or uncollectible, when applied.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["next_retry_at"]
        indexes = [models.Index(fields=["stage", "next_retry_at"], name="dunning_stage_next_retry")]

    def __str__(self) -> str:
        return f"Dunning of invoice {self.invoice_id} ({self.stage})"
