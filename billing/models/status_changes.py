"""The shape every status-audit row shares (`InvoiceStatusChange`, `ExemptionStatusChange`): who moved the record
from which status to which, why, and when. Abstract: each concrete model adds the foreign key to what it audits."""

from django.conf import settings
from django.db import models


class StatusChange(models.Model):
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status}"
