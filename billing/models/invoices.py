"""Invoices, their lines and tax lines, the gapless number sequences, pending items and the status audit.

Money is integer minor units plus a currency. An issued invoice (open, paid, void, uncollectible) never changes its
lines, amounts or tax: the services refuse it, and the guards below refuse it even for code that bypasses them.
"""

from django.conf import settings
from django.db import models

from billing.exceptions import InvoiceImmutable
from billing.models.status_changes import StatusChange
from billing.storage import private_storage
from subscriptions.models import Customer, Subscription, SubscriptionChange


class InvoiceStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    HELD = "held", "Held for review"
    OPEN = "open", "Open"
    PAID = "paid", "Paid"
    VOID = "void", "Void"
    UNCOLLECTIBLE = "uncollectible", "Uncollectible"


# The ONE table of allowed invoice status changes; billing.services.invoices.invoice_transition enforces it.
INVOICE_TRANSITIONS: dict[str, frozenset[str]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.HELD, InvoiceStatus.OPEN, InvoiceStatus.VOID}),
    InvoiceStatus.HELD: frozenset({InvoiceStatus.DRAFT, InvoiceStatus.OPEN, InvoiceStatus.VOID}),
    InvoiceStatus.OPEN: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE}),
    InvoiceStatus.PAID: frozenset(),
    InvoiceStatus.VOID: frozenset(),
    # Written off; a late payment still settles it.
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID}),
}
EDITABLE_STATUSES = (InvoiceStatus.DRAFT, InvoiceStatus.HELD)
ISSUED_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE)


class InvoiceKind(models.TextChoices):
    REGULAR = "regular", "Regular (period) invoice"
    PRORATION = "proration", "Mid-period change"
    MANUAL = "manual", "Manual"


class HoldReason(models.TextChoices):
    EXEMPTION_PENDING = "exemption_pending", "Tax exemption awaiting review"
    EXEMPTION_EXPIRES = "exemption_expires_in_period", "Tax exemption expires within the invoiced period"
    PO_MISSING = "po_missing", "PO number required but missing"
    SEATS_MISMATCH = "seats_mismatch", "Billed seats differ from provisioned seats"
    FIRST_INVOICE = "first_invoice", "First invoice of a new customer"
    AMOUNT_CHANGED = "amount_changed", "Total changed by more than 25% without a recorded change"
    TAX_LOCATION_MISSING = "tax_location_missing", "Missing tax location or invalid billing address"
    NEGATIVE_TOTAL = "negative_total", "Negative total"
    CURRENCY_MISMATCH = "currency_mismatch", "Currency differs from the customer's"
    EINVOICE_INVALID = "einvoice_invalid", "E-invoice fails EN 16931 validation"


class CorrectionReason(models.TextChoices):
    """Root causes of a correction (credit note or void); they feed the right-first-time rate."""

    TAX_EXEMPTION_MISSED = "tax_exemption_missed", "Tax exemption missed"
    WRONG_SEAT_COUNT = "wrong_seat_count", "Wrong seat count"
    WRONG_PRICE = "wrong_price", "Wrong price"
    WRONG_BILLING_DETAILS = "wrong_billing_details", "Wrong billing details"
    DUPLICATE = "duplicate", "Duplicate"
    SERVICE_ISSUE = "service_issue", "Service issue"
    GOODWILL = "goodwill", "Goodwill"
    OTHER = "other", "Other"


def invoice_pdf_upload_to(instance, filename: str) -> str:
    return f"invoices/{instance.customer_id}/{filename}"


class Invoice(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    kind = models.CharField(max_length=20, choices=InvoiceKind.choices, default=InvoiceKind.REGULAR)
    number = models.CharField(max_length=40, null=True, blank=True, unique=True, help_text="Assigned at issue.")
    series = models.CharField(max_length=20, blank=True, help_text="e.g. INV-2026; assigned at issue.")
    status = models.CharField(max_length=20, choices=InvoiceStatus.choices, default=InvoiceStatus.DRAFT)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    subtotal_minor = models.BigIntegerField(default=0)
    tax_minor = models.BigIntegerField(default=0)
    total_minor = models.BigIntegerField(default=0)
    amount_paid_minor = models.BigIntegerField(default=0)
    amount_credited_minor = models.BigIntegerField(default=0, help_text="Sum of credit notes.")
    amount_due_minor = models.BigIntegerField(default=0)
    issued_at = models.DateTimeField(null=True, blank=True)
    due_on = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    po_number = models.CharField(max_length=60, blank=True)
    # Copied from the billing profile and settings.SELLER when computed/issued: never live data after issue.
    billing_legal_name = models.CharField(max_length=200, blank=True)
    billing_address = models.JSONField(default=list, blank=True, help_text="Address lines as printed.")
    billing_country = models.CharField(max_length=2, blank=True)
    billing_region = models.CharField(max_length=10, blank=True)
    billing_emails = models.JSONField(default=list, blank=True)
    customer_tax_ids = models.JSONField(default=list, blank=True)
    seller_details = models.JSONField(default=dict, blank=True)
    # EN 16931 e-invoice (billing/einvoice.py): decided and copied with the billing details, frozen at issue.
    e_invoice = models.BooleanField(default=False, help_text="Issued as a Factur-X (EN 16931) e-invoice.")
    buyer_details = models.JSONField(
        default=dict, blank=True, help_text="Structured buyer address and reference, as the e-invoice states them."
    )
    e_invoice_validation = models.JSONField(
        default=dict, blank=True, help_text="XSD + EN 16931 Schematron result of the embedded XML."
    )
    exemption = models.ForeignKey(
        "billing.TaxExemption", null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    exemption_reference = models.CharField(max_length=120, blank=True)
    exemption_wording = models.TextField(blank=True)
    reverse_charge = models.BooleanField(default=False)
    reverse_charge_wording = models.TextField(blank=True)
    billed_seats = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seats this invoice bills (regular invoices); checked against provisioning."
    )
    subscription_change = models.OneToOneField(
        SubscriptionChange,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="proration_invoice",
        help_text="The mid-period change an 'invoice now' invoice bills (one invoice per change).",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    hold_reasons = models.JSONField(default=list, blank=True, help_text="[{code, message}] from the pre-issue checks.")
    checks_run_at = models.DateTimeField(null=True, blank=True)
    void_reason_code = models.CharField(max_length=30, choices=CorrectionReason.choices, blank=True)
    void_reason = models.TextField(blank=True)
    pdf_file = models.FileField(storage=private_storage, upload_to=invoice_pdf_upload_to, max_length=300, blank=True)
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    pdf_rendered_at = models.DateTimeField(null=True, blank=True)
    email_sent_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1, help_text="Increases on every change of a draft.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-created_at"], name="invoice_customer_created"),
            models.Index(fields=["status", "created_at"], name="invoice_status_created"),
            models.Index(fields=["issued_at"], name="invoice_issued_at"),
            # The billing run's "current period not drafted yet" probe (billing_run._unbilled, every run, for every
            # billable subscription): one seek instead of walking all of the subscription's invoices.
            models.Index(
                fields=["subscription", "period_start"],
                condition=models.Q(kind="regular"),
                name="invoice_regular_period",
            ),
        ]
        constraints = [
            # A re-run of the billing run, or a duplicate task, never bills a period twice. A voided invoice does not
            # count: void and re-bill (billing.services.invoices.rebill) bills its period again.
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=models.Q(kind="regular") & ~models.Q(status="void"),
                name="invoice_one_regular_per_subscription_period",
            ),
            models.CheckConstraint(
                condition=models.Q(number__isnull=True) | models.Q(status__in=ISSUED_STATUSES),
                name="invoice_number_only_when_issued",
            ),
            # A draft voided before issue has no number; every other issued state has one.
            models.CheckConstraint(
                condition=models.Q(number__isnull=False) | models.Q(status__in=["draft", "held", "void"]),
                name="invoice_issued_has_number",
            ),
            models.CheckConstraint(condition=models.Q(amount_paid_minor__gte=0), name="invoice_paid_not_negative"),
        ]

    # Fields an issued invoice never changes (guarded in save()).
    FROZEN_AFTER_ISSUE = (
        "number",
        "series",
        "currency",
        "subtotal_minor",
        "tax_minor",
        "total_minor",
        "customer_id",
        "issued_at",
        "billing_legal_name",
        "billing_address",
        "customer_tax_ids",
        "po_number",
        "e_invoice",
        "buyer_details",
        "exemption_wording",
        "reverse_charge",
        "reverse_charge_wording",
        "period_start",
        "period_end",
        "due_on",
    )

    def __str__(self) -> str:
        return self.number or f"Draft invoice #{self.pk}"

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded = {
            name: getattr(instance, name) for name in ("status", *cls.FROZEN_AFTER_ISSUE) if name in instance.__dict__
        }
        return instance

    def save(self, *args, **kwargs):
        # Invariant guard, not business logic: an issued invoice is a legal document.
        loaded = getattr(self, "_loaded", None)
        if loaded and loaded.get("status") in ISSUED_STATUSES:
            changed = [name for name, value in loaded.items() if name != "status" and getattr(self, name) != value]
            if changed:
                raise InvoiceImmutable(
                    f"Invoice {loaded.get('number')} is issued and cannot change ({', '.join(changed)}); "
                    "issue a credit note instead."
                )
        super().save(*args, **kwargs)
        self._loaded = {name: getattr(self, name) for name in ("status", *self.FROZEN_AFTER_ISSUE)}

    @property
    def is_issued(self) -> bool:
        """Issued = was given a number (a draft voided before issue never was)."""
        return self.issued_at is not None

    @property
    def is_editable(self) -> bool:
        return self.status in EDITABLE_STATUSES


def _assert_invoice_editable(invoice_id: int | None) -> None:
    if invoice_id is None:
        return
    if Invoice.objects.filter(pk=invoice_id, status__in=ISSUED_STATUSES).exists():
        raise InvoiceImmutable("This invoice is issued and its lines cannot change; issue a credit note instead.")


class LineKind(models.TextChoices):
    FLAT = "flat", "Flat fee"
    SEATS = "seats", "Seats"
    ADDON = "addon", "Add-on"
    SETUP = "setup", "One-time set-up"
    PRORATION = "proration", "Mid-period change"
    MANUAL = "manual", "Manual"
    DISCOUNT = "discount", "Discount"


class InvoiceLine(models.Model):
    """One line, in the customer's words; tax category, rate and name are copied so later edits never alter it."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=20, choices=LineKind.choices, default=LineKind.MANUAL)
    description = models.CharField(max_length=300)
    sku_code = models.CharField(max_length=40, blank=True, help_text="Printed as small print only.")
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    quantity = models.IntegerField(default=1)
    unit_amount_minor = models.BigIntegerField(default=0)
    amount_minor = models.BigIntegerField(default=0)
    is_proration = models.BooleanField(default=False)
    tax_category = models.CharField(max_length=30, default="saas")
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=0, help_text="Percent, copied.")
    tax_name = models.CharField(max_length=80, blank=True)
    subscription_change = models.ForeignKey(
        SubscriptionChange, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A discount line (kind "discount") follows the line it discounts and names the discount that made it.
    discount = models.ForeignKey(
        "billing.Discount", null=True, blank=True, on_delete=models.PROTECT, related_name="invoice_lines"
    )

    class Meta:
        ordering = ["invoice_id", "position", "id"]

    def __str__(self) -> str:
        return self.description

    def save(self, *args, **kwargs):
        _assert_invoice_editable(self.invoice_id)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        _assert_invoice_editable(self.invoice_id)
        return super().delete(*args, **kwargs)


class InvoiceTaxLine(models.Model):
    """Tax per rate per invoice = taxable subtotal × rate, rounded half-up once (docs/billing-rules.md)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="tax_lines")
    tax_rate = models.ForeignKey("billing.TaxRate", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    name = models.CharField(max_length=80)
    jurisdiction = models.CharField(max_length=20, blank=True)
    rate = models.DecimalField(max_digits=7, decimal_places=4, help_text="Percent, copied.")
    taxable_amount_minor = models.BigIntegerField()
    tax_amount_minor = models.BigIntegerField()

    class Meta:
        ordering = ["invoice_id", "name"]

    def __str__(self) -> str:
        return f"{self.name} {self.rate}%"

    def save(self, *args, **kwargs):
        _assert_invoice_editable(self.invoice_id)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        _assert_invoice_editable(self.invoice_id)
        return super().delete(*args, **kwargs)


class InvoiceNumberSequence(models.Model):
    """One counter per series (INV-2026, CN-2026). Issuing locks the row, so numbers are gapless and unique even
    with concurrent issuers on PostgreSQL (SQLite serialises writers anyway)."""

    series = models.CharField(max_length=20, unique=True)
    last_value = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["series"]

    def __str__(self) -> str:
        return f"{self.series}: {self.last_value}"


class InvoiceStatusChange(StatusChange):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="status_changes")


class PendingInvoiceItem(models.Model):
    """A mid-period change (billing mode "add to next invoice") waiting for the customer's next regular invoice."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="pending_invoice_items")
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="pending_invoice_items")
    # One item per preview line of the change; billing.services.changes never bills a change twice.
    subscription_change = models.ForeignKey(
        SubscriptionChange, null=True, blank=True, on_delete=models.PROTECT, related_name="pending_items"
    )
    description = models.CharField(max_length=300)
    sku_code = models.CharField(max_length=40, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    quantity = models.IntegerField(default=1)
    unit_amount_minor = models.BigIntegerField(default=0)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    is_proration = models.BooleanField(default=True)
    tax_category = models.CharField(max_length=30, default="saas")
    discount = models.ForeignKey(
        "billing.Discount", null=True, blank=True, on_delete=models.PROTECT, related_name="pending_items"
    )
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="pending_items_collected"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["subscription", "invoice"], name="pending_item_sub_invoice")]

    def __str__(self) -> str:
        return self.description
