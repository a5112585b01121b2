"""The audit trail and staff notes, read-only (notes are added on the customer page, through `staff_note_add`)."""

from django.contrib import admin

from subscriptions.admin.base import ReadOnlyAdmin
from subscriptions.models import AuditEvent, StaffNote


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail, read-only for everyone (dj-stripe's event admin does the same)."""

    list_display = ["created_at", "customer", "actor", "actor_kind", "action", "summary", "reason"]
    list_filter = ["actor_kind", "action"]
    list_select_related = ["customer", "actor"]
    search_fields = ["customer__name", "actor__email", "action", "object_id", "summary", "reason"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "customer",
        "actor",
        "actor_kind",
        "action",
        "object_type",
        "object_id",
        "summary",
        "before",
        "after",
        "reason",
    ]


@admin.register(StaffNote)
class StaffNoteAdmin(ReadOnlyAdmin):
    """Notes are added on the customer page (audited) and never edited."""

    list_display = ["created_at", "customer", "author", "body"]
    list_select_related = ["customer", "author"]
    search_fields = ["customer__name", "author__email", "body"]
