"""Void and re-bill: the correction billing staff make when an invoice is wrong for a reason the customer's details
explain (wrong legal name, address or PO), instead of a credit note.

The invoice is voided with a root-cause code (it keeps everything it said: number, lines, amounts) and the same
lines are billed again on a new invoice, computed from the customer's CURRENT billing profile, tax rates and
exemptions. The new invoice goes through the pre-issue checks like any other (issued at once, or held) and takes the
next number of the series when it is issued, so numbering stays gapless. Mid-period items that were collected on the
voided invoice move to the new one, so they are billed exactly once.
"""

from django.db import transaction

from billing.exceptions import InvalidTransition
from billing.models import Invoice, InvoiceStatus, PendingInvoiceItem
from billing.services.invoices.drafts import DraftLine, invoice_draft_create, line_fields
from billing.services.invoices.issue import invoice_finalize
from billing.services.invoices.settlement import correction_reason_check, invoice_void
from billing.services.invoices.state import invoice_lock
from subscriptions.models import User
from subscriptions.services.audit import audit_record

REBILLABLE_STATUSES = (InvoiceStatus.HELD, InvoiceStatus.OPEN)


def invoice_void_and_rebill(
    *, invoice_id: int, reason_code: str, reason: str = "", po_number: str | None = None, actor: User | None = None
) -> Invoice:
    """Void a held or open (unpaid, uncredited) invoice with `reason_code` and bill its lines again on a new invoice,
    which is finalized at once (issued, or held by the checks). `po_number` replaces the voided invoice's PO on the
    new one (None keeps it). Returns the new invoice.

    Refused (InvalidTransition) for an invoice that is paid, partly paid, credited or in any other state: money has
    moved, so the correction is a credit note."""
    correction_reason_check(reason_code)
    with transaction.atomic():
        old = invoice_lock(invoice_id)
        if old.status not in REBILLABLE_STATUSES:
            raise InvalidTransition(
                f"Invoice {old.number or old.pk} is {old.status}; only held or open invoices can be re-billed."
            )
        if old.amount_paid_minor > 0 or old.amount_credited_minor > 0:
            raise InvalidTransition(
                f"Invoice {old.number or old.pk} has payments or credits; issue a credit note instead of re-billing."
            )
        lines = [DraftLine(kind=line.kind, **line_fields(line)) for line in old.lines.order_by("position", "pk")]
        collected = list(PendingInvoiceItem.objects.filter(invoice=old).values_list("pk", flat=True))
        invoice_void(invoice_id=old.pk, reason_code=reason_code, reason=reason, actor=actor)
        new = invoice_draft_create(
            customer=old.customer,
            currency=old.currency,
            lines=lines,
            subscription=old.subscription,
            kind=old.kind,
            period_start=old.period_start,
            period_end=old.period_end,
            billed_seats=old.billed_seats,
            # The change stays linked to the invoice that first billed it (one invoice per change); the new invoice's
            # lines still name it.
            subscription_change=None,
            po_number=old.po_number if po_number is None else po_number.strip(),
            actor=actor,
        )
        # Billed once: the items the voided invoice collected are billed by the new one (a void before issue would
        # have put them back in the queue for the next regular invoice).
        PendingInvoiceItem.objects.filter(pk__in=collected).update(invoice=new)
        audit_record(
            customer=old.customer,
            actor=actor,
            action="invoice.rebilled",
            obj=new,
            summary=f"Invoice {old.number or f'#{old.pk}'} voided ({reason_code}) and re-billed as draft #{new.pk}",
            before={"invoice_id": old.pk, "number": old.number, "total_minor": old.total_minor},
            after={"invoice_id": new.pk, "reason_code": reason_code},
        )
    return invoice_finalize(invoice_id=new.pk, actor=actor)
