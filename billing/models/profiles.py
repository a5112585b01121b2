"""Who the invoice is addressed to, and how the customer wants to be billed."""

from django.db import models

from subscriptions.models import Customer


class ChangeBillingMode(models.TextChoices):
    # An immediate proration invoice for every mid-period change (default for customers paying by card).
    INVOICE_NOW = "invoice_now", "Invoice now"
    # Pending items collected on the next regular invoice (for customers paying by invoice on net terms, so several
    # seat changes in a month do not flood their accounts-payable team with tiny invoices).
    NEXT_INVOICE = "next_invoice", "Add to next invoice"


class BillingProfile(models.Model):
    """One per customer. Issued invoices copy these details; later edits never alter an issued invoice."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="billing_profile")
    legal_name = models.CharField(max_length=200, blank=True)
    address_line1 = models.CharField(max_length=200, blank=True)
    address_line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100, blank=True)
    region = models.CharField(max_length=50, blank=True, help_text="State/province code, e.g. CA, NY.")
    postal_code = models.CharField(max_length=20, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2.")
    billing_emails = models.JSONField(default=list, blank=True, help_text="Where invoices are sent (list).")
    standing_po_number = models.CharField(max_length=60, blank=True, help_text="Used on every invoice unless set.")
    requires_po = models.BooleanField(default=False, help_text="Invoices without a PO number are held.")
    tax_id = models.CharField(max_length=40, blank=True, help_text="Tax ID / VAT number, stored compact.")
    tax_id_valid = models.BooleanField(default=False, help_text="Format and checksum passed (python-stdnum).")
    payment_terms_days = models.PositiveSmallIntegerField(default=30, help_text="Net days.")
    invoice_language = models.CharField(max_length=10, default="en")
    currency = models.CharField(max_length=3, default="USD")
    change_billing_mode = models.CharField(
        max_length=20, choices=ChangeBillingMode.choices, default=ChangeBillingMode.INVOICE_NOW
    )
    # EN 16931 e-invoices (docs/billing-rules.md, "E-invoices"): EU business customers get Factur-X unless billing
    # staff switch it off here (e.g. a customer whose accounts payable cannot take hybrid PDFs).
    e_invoicing = models.BooleanField(
        default=True, help_text="EU business customers (valid VAT ID) receive Factur-X e-invoices unless unticked."
    )
    buyer_reference = models.CharField(
        max_length=100,
        blank=True,
        help_text="Buyer reference (BT-10) on every e-invoice, e.g. a German public buyer's Leitweg-ID.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer_id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(payment_terms_days__lte=365), name="billing_profile_terms_at_most_365"
            ),
        ]

    def __str__(self) -> str:
        return f"Billing profile of {self.customer}"

    @property
    def address_lines(self) -> list[str]:
        """The postal address as printed on an invoice."""
        city_line = " ".join(part for part in [self.city, self.region, self.postal_code] if part)
        return [line for line in [self.address_line1, self.address_line2, city_line, self.country] if line]
