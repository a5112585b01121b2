"""Outbound events about billing objects: their snapshots, recorded in the outbox of the subscriptions layer
(subscriptions/services/events.py) in the caller's transaction. docs/webhooks.md lists what each carries."""

from datetime import date

from django.db import transaction
from django.db.models import BigIntegerField
from django.db.models.functions import Cast
from django.utils import timezone

from billing.models import (
    CreditNote,
    Invoice,
    InvoiceStatus,
    JourneyStageChange,
    Payment,
    PaymentStatus,
    TaxExemption,
)
from subscriptions.models import Event
from subscriptions.services.events import EventDraft, event_record, events_record_many, iso

# Invoice status → event; `uncollectible` and the way back to draft are internal and not in the catalogue.
INVOICE_STATUS_EVENTS = {
    InvoiceStatus.OPEN: "invoice.issued",
    InvoiceStatus.HELD: "invoice.held",
    InvoiceStatus.PAID: "invoice.paid",
    InvoiceStatus.VOID: "invoice.voided",
}


def invoice_snapshot(invoice: Invoice) -> dict:
    return {
        "object": "invoice",
        "id": invoice.pk,
        "number": invoice.number,
        "status": invoice.status,
        "kind": invoice.kind,
        "currency": invoice.currency,
        "subtotal_minor": invoice.subtotal_minor,
        "tax_minor": invoice.tax_minor,
        "total_minor": invoice.total_minor,
        "amount_paid_minor": invoice.amount_paid_minor,
        "amount_credited_minor": invoice.amount_credited_minor,
        "amount_due_minor": invoice.amount_due_minor,
        "subscription_id": invoice.subscription_id,
        "period_start": iso(invoice.period_start),
        "period_end": iso(invoice.period_end),
        "issued_at": iso(invoice.issued_at),
        "due_on": iso(invoice.due_on),
        "paid_at": iso(invoice.paid_at),
        "voided_at": iso(invoice.voided_at),
        "po_number": invoice.po_number,
        "hold_reasons": [reason.get("code", "") for reason in invoice.hold_reasons or []],
    }


def invoice_status_event(invoice: Invoice) -> EventDraft | None:
    """The event of the invoice's (new) status, or None when its status is not in the catalogue."""
    type_ = INVOICE_STATUS_EVENTS.get(invoice.status)
    if type_ is None:
        return None
    return EventDraft(type_, invoice.customer_id, "invoice", str(invoice.pk), invoice_snapshot(invoice))


def invoice_status_event_record(invoice: Invoice) -> None:
    """One-line hook for the invoice transition service."""
    draft = invoice_status_event(invoice)
    if draft is not None:
        events_record_many([draft])


def invoice_overdue_record(invoice: Invoice) -> bool:
    """`invoice.overdue`, once per invoice (the daily scan and dunning may both ask). Caller holds the invoice lock."""
    if Event.objects.filter(type="invoice.overdue", object_type="invoice", object_id=str(invoice.pk)).exists():
        return False
    event_record(
        type="invoice.overdue",
        customer_id=invoice.customer_id,
        object_type="invoice",
        object_id=invoice.pk,
        data=invoice_snapshot(invoice),
    )
    return True


def invoices_overdue_record(*, today: date | None = None) -> int:
    """Daily (beat): `invoice.overdue` for every open invoice whose due date has passed (idempotent per invoice)."""
    today = today or timezone.localdate()
    recorded = 0
    ids = list(
        Invoice.objects.filter(status=InvoiceStatus.OPEN, due_on__lt=today, amount_due_minor__gt=0)
        .exclude(pk__in=_already_overdue())
        .values_list("pk", flat=True)
    )
    for invoice_id in ids:
        with transaction.atomic():
            invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
            if invoice.status == InvoiceStatus.OPEN and invoice.due_on and invoice.due_on < today:
                recorded += invoice_overdue_record(invoice)
    return recorded


def _already_overdue():
    return (
        Event.objects.filter(type="invoice.overdue", object_type="invoice")
        .annotate(invoice_id=Cast("object_id", BigIntegerField()))
        .values("invoice_id")
    )


def credit_note_event_record(credit_note: CreditNote) -> None:
    data = {
        "object": "credit_note",
        "id": credit_note.pk,
        "number": credit_note.number,
        "invoice_id": credit_note.invoice_id,
        "invoice_number": credit_note.invoice.number,
        "currency": credit_note.currency,
        "reason_code": credit_note.reason_code,
        "subtotal_minor": credit_note.subtotal_minor,
        "tax_minor": credit_note.tax_minor,
        "total_minor": credit_note.total_minor,
        "refund_due_minor": credit_note.refund_due_minor,
        "is_full": credit_note.is_full,
        "issued_at": iso(credit_note.issued_at),
    }
    event_record(
        type="credit_note.issued",
        customer_id=credit_note.customer_id,
        object_type="credit_note",
        object_id=credit_note.pk,
        data=data,
    )


def payment_event_record(payment: Payment) -> None:
    """payment.succeeded / payment.failed for a payment that just reached that status (others are not events)."""
    type_ = {PaymentStatus.SUCCEEDED: "payment.succeeded", PaymentStatus.FAILED: "payment.failed"}.get(payment.status)
    if type_ is None:
        return
    data = {
        "object": "payment",
        "id": payment.pk,
        "invoice_id": payment.invoice_id,
        "kind": payment.kind,
        "status": payment.status,
        "amount_minor": payment.amount_minor,
        "currency": payment.currency,
        "attempt": payment.attempt,
        "off_session": payment.off_session,
        "failure_code": payment.failure_code,
        "failure_message": payment.failure_message,
        "created_at": iso(payment.created_at),
    }
    event_record(type=type_, customer_id=payment.customer_id, object_type="payment", object_id=payment.pk, data=data)


def tax_exemption_event_record(exemption: TaxExemption, *, type: str, days_left: int | None = None) -> None:  # noqa: A002
    data = {
        "object": "tax_exemption",
        "id": exemption.pk,
        "status": exemption.status,
        "jurisdictions": list(exemption.jurisdictions),
        "exemption_type": exemption.exemption_type,
        "certificate_number": exemption.certificate_number,
        "expires_on": iso(exemption.expires_on),
        "decision_reason": exemption.decision_reason if exemption.status == "rejected" else "",
    }
    if days_left is not None:
        data["days_left"] = days_left
    event_record(
        type=type, customer_id=exemption.customer_id, object_type="tax_exemption", object_id=exemption.pk, data=data
    )


def tax_exemption_transition_event_record(exemption: TaxExemption) -> None:
    """One-line hook for the exemption transition service: approved and rejected are `tax_exemption.decided`."""
    if exemption.status in ("approved", "rejected"):
        tax_exemption_event_record(exemption, type="tax_exemption.decided")


def stage_change_event(change: JourneyStageChange) -> EventDraft:
    """`customer.stage_changed` (internal: staff endpoints only, docs/decisions.md "Journey stages are internal"):
    the previous and the new journey stage and when; never the score."""
    data = {
        "object": "customer",
        "id": change.customer_id,
        "previous_stage": change.from_stage or None,
        "stage": change.to_stage,
        "changed_at": iso(change.changed_at),
    }
    return EventDraft("customer.stage_changed", change.customer_id, "customer", str(change.customer_id), data)
