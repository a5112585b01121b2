"""The invoice state machine: locking one invoice and moving it along INVOICE_TRANSITIONS (status-change and
audit rows), the one place an invoice's status changes.
"""

from billing.exceptions import (
    InvoiceImmutable,
    NotFound,
)
from billing.models import (
    EDITABLE_STATUSES,
    Invoice,
    InvoiceStatus,
    InvoiceStatusChange,
)
from billing.services.events import invoice_status_event_record
from billing.services.transitions import transition_set
from subscriptions.models import (
    User,
)
from subscriptions.services.audit import audit_record


def invoice_lock(invoice_id: int) -> Invoice:
    """Lock one invoice row (inside the caller's transaction); NotFound when it does not exist. Lock several rows
    (invoice with payments, refunds or a dunning case) through billing.locks instead, which fixes the order."""
    try:
        return Invoice.objects.select_for_update().select_related("customer").get(pk=invoice_id)
    except Invoice.DoesNotExist:
        raise NotFound("That invoice does not exist.")


def _assert_editable(invoice: Invoice) -> None:
    if invoice.status not in EDITABLE_STATUSES:
        raise InvoiceImmutable(
            f"Invoice {invoice.number or invoice.pk} is {invoice.get_status_display().lower()} and cannot change; "
            "issue a credit note instead."
        )


def _transition_rows(
    invoice: Invoice, to_status: str, *, actor: User | None, reason: str
) -> tuple[InvoiceStatusChange, dict]:
    """Move `invoice` to `to_status` per INVOICE_TRANSITIONS (in memory); return its unsaved status-change row and
    the fields of its audit row. Shared by `invoice_transition` and the billing run's batch path, which writes them
    in bulk."""
    from_status = transition_set(invoice, to_status)
    change = InvoiceStatusChange(
        invoice=invoice, from_status=from_status, to_status=to_status, actor=actor, reason=reason[:2000]
    )
    audit = {
        "action": f"invoice.{to_status}",
        "object_type": invoice._meta.model_name,
        "object_id": str(invoice.pk),
        "summary": f"Invoice {invoice.number or '#' + str(invoice.pk)}: {InvoiceStatus(to_status).label.lower()}"[:300],
        "before": {"status": from_status},
        "after": {"status": to_status},
        "reason": reason,
    }
    if to_status == InvoiceStatus.HELD:
        # The checks that held it, kept here: a release clears the invoice's own hold_reasons (billing quality).
        audit["after"]["hold_reasons"] = list(invoice.hold_reasons or [])
    return change, audit


def invoice_transition(invoice: Invoice, to_status: str, *, actor: User | None = None, reason: str = "") -> None:
    """Move a LOCKED invoice to `to_status` per INVOICE_TRANSITIONS; write the status-change and audit rows."""
    change, audit = _transition_rows(invoice, to_status, actor=actor, reason=reason)
    change.save()
    audit_record(
        customer=invoice.customer,
        actor=actor,
        action=audit["action"],
        obj=invoice,
        summary=audit["summary"],
        before=audit["before"],
        after=audit["after"],
        reason=reason,
    )
    invoice_status_event_record(invoice)
