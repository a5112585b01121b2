"""Accounting exports for finance: a date range's documents as CSV (zip) or XLSX, built by a Celery task."""

from django.conf import settings
from django.db import models

from billing.storage import private_storage


class ExportFormat(models.TextChoices):
    XLSX = "xlsx", "Excel workbook (.xlsx)"
    CSV = "csv", "CSV files (.zip)"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


def export_upload_to(instance, filename: str) -> str:
    return f"exports/{instance.pk}/{filename}"


class AccountingExport(models.Model):
    """One export run. `start`/`end` are dates, the range half-open in UTC: [start 00:00, end 00:00)."""

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    start = models.DateField()
    end = models.DateField(help_text="Exclusive: a month is [1 Nov, 1 Dec).")
    format = models.CharField(max_length=10, choices=ExportFormat.choices, default=ExportFormat.XLSX)
    status = models.CharField(max_length=10, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0, help_text="Percent done.")
    rows = models.PositiveIntegerField(default=0)
    file = models.FileField(storage=private_storage, upload_to=export_upload_to, max_length=300, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_accountingexport", "Can run and download accounting exports")]
        constraints = [models.CheckConstraint(condition=models.Q(end__gt=models.F("start")), name="export_range")]

    def __str__(self) -> str:
        return f"Accounting export {self.start} – {self.end} ({self.get_format_display()})"
