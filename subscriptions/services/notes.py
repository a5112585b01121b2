"""Internal staff notes on a customer."""

from django.db import transaction

from subscriptions.exceptions import NoteInvalid
from subscriptions.models import Customer, StaffNote, User
from subscriptions.services.audit import audit_record

NOTE_MAX_LENGTH = 5000


def staff_note_add(*, customer: Customer, author: User, body: str) -> StaffNote:
    """Append an internal note to `customer` and audit it. Notes are never edited or shown to the customer."""
    body = (body or "").strip()
    if not body:
        raise NoteInvalid("Write the note before saving it.")
    if len(body) > NOTE_MAX_LENGTH:
        raise NoteInvalid(f"A note can be at most {NOTE_MAX_LENGTH} characters; this one has {len(body)}.")
    with transaction.atomic():
        note = StaffNote.objects.create(customer=customer, author=author, body=body)
        audit_record(
            customer=customer,
            actor=author,
            action="customer.note_added",
            obj=note,
            summary=f"Internal note: {body[:200]}",
            after={"note_id": note.pk},
        )
    return note
