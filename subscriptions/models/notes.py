"""Internal notes staff leave on a customer: never shown to the customer, never edited once written."""

from django.conf import settings
from django.db import models

from subscriptions.models.customers import Customer


class StaffNote(models.Model):
    """An append-only internal note. Written only through subscriptions.services.notes.staff_note_add (audited)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="staff_notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Note on {self.customer_id} by {self.author_id or 'a removed user'}"
