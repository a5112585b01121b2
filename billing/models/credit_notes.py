"""Credit notes: the only way to correct an issued invoice. Numbered (CN-YYYY-000001), reason-coded, own PDF."""

from django.conf import settings
from django.db import models

from billing.models.invoices import CorrectionReason, Invoice, InvoiceLine
from billing.storage import private_storage
from subscriptions.models import Customer


def credit_note_pdf_upload_to(instance, filename: str) -> str:
    return f"credit-notes/{instance.customer_id}/{filename}"


class CreditNote(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=40, unique=True)
    series = models.CharField(max_length=20)
    currency = models.CharField(max_length=3)
    reason_code = models.CharField(max_length=30, choices=CorrectionReason.choices)
    reason_text = models.TextField(blank=True)
    subtotal_minor = models.BigIntegerField()
    tax_minor = models.BigIntegerField()
    total_minor = models.BigIntegerField()
    is_full = models.BooleanField(default=False)
    refund_due_minor = models.BigIntegerField(
        default=0,
        help_text="The part of the total the customer had already paid and gets back (0 when the credit only lowers "
        "what was still due). Refunded to the card through Stripe, or owed by bank transfer.",
    )
    issued_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    pdf_file = models.FileField(
        storage=private_storage, upload_to=credit_note_pdf_upload_to, max_length=300, blank=True
    )
    pdf_sha256 = models.CharField(max_length=64, blank=True)
    pdf_rendered_at = models.DateTimeField(null=True, blank=True)
    e_invoice_validation = models.JSONField(
        default=dict, blank=True, help_text="XSD + EN 16931 Schematron result of the embedded XML (e-invoiced only)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-issued_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(total_minor__gt=0), name="credit_note_total_positive"),
            models.CheckConstraint(
                condition=models.Q(refund_due_minor__gte=0, refund_due_minor__lte=models.F("total_minor")),
                name="credit_note_refund_due_within_total",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    invoice_line = models.ForeignKey(InvoiceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    description = models.CharField(max_length=300)
    quantity = models.IntegerField(default=1)
    amount_minor = models.BigIntegerField(help_text="Net credited amount (positive).")
    tax_rate = models.DecimalField(max_digits=7, decimal_places=4, default=0)
    tax_name = models.CharField(max_length=80, blank=True)
    tax_minor = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["credit_note_id", "id"]

    def __str__(self) -> str:
        return self.description
