"""Tax rates staff manage, and customers' tax exemptions with their certificates."""

from django.conf import settings
from django.db import models

from billing.models.status_changes import StatusChange
from billing.storage import private_storage
from subscriptions.models import Customer


class TaxRate(models.Model):
    """A rate for a jurisdiction (country, optionally region) and some tax categories, over a date range.

    `rate` is a percentage (19.0000 means 19 %). Invoices copy name and rate at computation, so editing or ending a
    rate never alters an issued invoice.
    """

    country = models.CharField(max_length=2)
    region = models.CharField(max_length=10, blank=True, help_text="Empty: applies country-wide.")
    name = models.CharField(max_length=80, help_text='As printed on invoices, e.g. "CA sales tax", "VAT DE".')
    rate = models.DecimalField(max_digits=7, decimal_places=4, help_text="Percent, e.g. 7.2500.")
    tax_categories = models.JSONField(default=list, help_text='SKU tax categories it applies to, e.g. ["saas"].')
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True, help_text="Exclusive; empty = open-ended.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["country", "region", "-effective_from"]
        indexes = [models.Index(fields=["country", "region"], name="taxrate_jurisdiction")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rate__gte=0, rate__lte=100), name="taxrate_rate_between_0_and_100"
            ),
            models.CheckConstraint(
                condition=models.Q(effective_to__isnull=True) | models.Q(effective_to__gt=models.F("effective_from")),
                name="taxrate_range_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.rate}%)"

    @property
    def jurisdiction(self) -> str:
        return f"{self.country}-{self.region}" if self.region else self.country


class ExemptionStatus(models.TextChoices):
    SUBMITTED = "submitted", "Submitted, awaiting review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    SUPERSEDED = "superseded", "Replaced by a newer certificate"


# The only allowed status changes; billing.services.exemptions enforces this table.
EXEMPTION_TRANSITIONS: dict[str, frozenset[str]] = {
    ExemptionStatus.SUBMITTED: frozenset(
        {ExemptionStatus.APPROVED, ExemptionStatus.REJECTED, ExemptionStatus.SUPERSEDED}
    ),
    ExemptionStatus.APPROVED: frozenset({ExemptionStatus.EXPIRED, ExemptionStatus.SUPERSEDED}),
    ExemptionStatus.REJECTED: frozenset(),
    ExemptionStatus.EXPIRED: frozenset(),
    ExemptionStatus.SUPERSEDED: frozenset(),
}


class ExemptionType(models.TextChoices):
    RESALE = "resale", "Resale"
    NONPROFIT = "nonprofit", "Non-profit / charitable organisation"
    GOVERNMENT = "government", "Government entity"
    EDUCATION = "education", "Educational institution"
    OTHER = "other", "Other"


def certificate_upload_to(instance: "TaxExemption", filename: str) -> str:
    # The customer's file name is never used on disk (it is kept in original_filename for display only).
    import secrets

    return f"tax-certificates/{instance.customer_id}/{secrets.token_hex(16)}"


class TaxExemption(models.Model):
    """A customer's claim to be exempt in some jurisdictions, with the certificate billing staff review.

    Replacing a certificate creates a new row (a new review) and points the old one at it (`replaced_by`): history
    is kept. Only an approved, unexpired exemption zero-rates invoices; a submitted one holds them.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="tax_exemptions")
    jurisdictions = models.JSONField(default=list, help_text='e.g. ["US-NY"] or ["US"] (country-wide).')
    exemption_type = models.CharField(max_length=20, choices=ExemptionType.choices)
    reason = models.TextField(blank=True)
    certificate_number = models.CharField(max_length=80)
    expires_on = models.DateField()
    certificate = models.FileField(storage=private_storage, upload_to=certificate_upload_to, max_length=300)
    certificate_content_type = models.CharField(max_length=50)
    certificate_size = models.PositiveIntegerField()
    certificate_sha256 = models.CharField(max_length=64)
    original_filename = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=ExemptionStatus.choices, default=ExemptionStatus.SUBMITTED)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(auto_now_add=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, help_text="Shown to the customer when rejected.")
    replaced_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces")
    reminder_30_sent_at = models.DateTimeField(null=True, blank=True)
    reminder_7_sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [models.Index(fields=["customer", "status"], name="exemption_customer_status")]

    def __str__(self) -> str:
        return f"Exemption {self.certificate_number} ({self.get_status_display()})"

    def covers(self, *, country: str, region: str) -> bool:
        """True when one of the jurisdictions is the country itself or exactly country-region."""
        wanted = {country.upper(), f"{country}-{region}".upper()} if region else {country.upper()}
        return any(str(j).upper() in wanted for j in self.jurisdictions)


class ExemptionStatusChange(StatusChange):
    exemption = models.ForeignKey(TaxExemption, on_delete=models.CASCADE, related_name="status_changes")
