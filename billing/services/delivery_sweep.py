"""Redo the after-issue work whose hand-off to the broker was lost.

`enqueue_on_commit` never fails a committed request when the broker refuses a message (it logs and counts it); the
work is then picked up here, every few minutes (beat `billing.issued_documents_sweep`):

- an invoice issued more than `grace` ago, never e-mailed and with no payment attempt, has its after-issue task
  queued again (PDF, e-mail, then automatic collection) — so a card customer is never charged twice by it, and a
  failed charge's dunning is never restarted;
- a credit note issued more than `grace` ago without its PDF has the PDF task queued again.

Only the last `window` is looked at, so an invoice nobody can be e-mailed (no billing recipient) is retried for a
bounded time, not forever. Every task queued here is idempotent (the e-mail is sent once, the PDF rendered once).
"""

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from billing.models import CreditNote, Invoice, InvoiceStatus
from subscriptions.dispatch import send_now

GRACE = timedelta(minutes=10)
WINDOW = timedelta(days=7)
LIMIT = 500


@dataclass(frozen=True)
class SweepResult:
    invoices: list[int]
    credit_notes: list[int]


def issued_documents_sweep(*, grace: timedelta = GRACE, window: timedelta = WINDOW) -> SweepResult:
    now = timezone.now()
    invoice_ids = list(
        Invoice.objects.filter(
            status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID),
            issued_at__gte=now - window,
            issued_at__lte=now - grace,
            email_sent_at__isnull=True,
            payments__isnull=True,
        )
        .order_by("issued_at", "id")
        .values_list("id", flat=True)[:LIMIT]
    )
    credit_note_ids = list(
        CreditNote.objects.filter(issued_at__gte=now - window, issued_at__lte=now - grace, pdf_sha256="")
        .order_by("issued_at", "id")
        .values_list("id", flat=True)[:LIMIT]
    )
    for invoice_id in invoice_ids:
        send_now("billing.invoice_after_issue", invoice_id=invoice_id)
    for credit_note_id in credit_note_ids:
        send_now("billing.credit_note_render_pdf", credit_note_id=credit_note_id)
    return SweepResult(invoices=invoice_ids, credit_notes=credit_note_ids)
