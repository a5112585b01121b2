"""After issue: voids (with a root-cause reason code), payments applied to an invoice, uncollectible."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from billing.exceptions import (
    CurrencyMismatch,
    InvalidTransition,
    PaymentInvalid,
    ReasonCodeInvalid,
)
from billing.models import (
    CorrectionReason,
    Invoice,
    InvoiceStatus,
    PendingInvoiceItem,
)
from billing.money import format_money
from billing.services.invoices.state import invoice_lock, invoice_transition
from subscriptions.models import (
    User,
)
from subscriptions.services.audit import audit_occurred_at, audit_record


def correction_reason_check(reason_code: str) -> None:
    """Refuse a void or credit note without one of the root-cause codes (CorrectionReason)."""
    if reason_code not in CorrectionReason.values:
        raise ReasonCodeInvalid(f"Choose a reason: {', '.join(CorrectionReason.values)}.")


def invoice_void(*, invoice_id: int, reason_code: str, reason: str = "", actor: User | None = None) -> Invoice:
    """Void a draft, held or open invoice with a root-cause reason code (feeds the right-first-time rate).

    An open invoice with payments cannot be voided (refund through a credit note). Voiding a never-issued draft
    returns its pending items to the queue for the next invoice.
    """
    correction_reason_check(reason_code)
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if invoice.amount_paid_minor > 0:
            raise InvalidTransition("This invoice has payments; issue a credit note (and refund) instead of voiding.")
        was_issued = invoice.is_issued
        invoice_transition(invoice, InvoiceStatus.VOID, actor=actor, reason=f"{reason_code}: {reason}".strip(": "))
        invoice.void_reason_code = reason_code
        invoice.void_reason = reason
        invoice.voided_at = timezone.now()
        invoice.amount_due_minor = 0
        invoice.save()
        if not was_issued:
            PendingInvoiceItem.objects.filter(invoice=invoice).update(invoice=None)
    return invoice


def invoice_apply_payment(
    *,
    invoice_id: int,
    amount_minor: int,
    currency: str | None = None,
    paid_at: datetime | None = None,
    actor: User | None = None,
    reference: str = "",
) -> Invoice:
    """Record a payment of `amount_minor` against an open (or uncollectible) invoice; paid when nothing is due.

    Called by billing.services.payments (cards through Stripe, and staff recording a bank transfer). Refuses other
    currencies, non-positive amounts and overpayment. Locks the invoice row.
    """
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        raise PaymentInvalid("A payment must be a positive whole number of minor units.")
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if currency and currency.upper() != invoice.currency:
            raise CurrencyMismatch(
                f"The invoice is in {invoice.currency}; a {currency.upper()} payment cannot settle it."
            )
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            raise InvalidTransition(f"Invoice {invoice.number or invoice.pk} is {invoice.status}; it takes no payment.")
        if amount_minor > invoice.amount_due_minor:
            raise PaymentInvalid(
                f"The payment ({amount_minor}) is more than the amount due ({invoice.amount_due_minor}).",
            )
        invoice.amount_paid_minor += amount_minor
        invoice.amount_due_minor = max(
            0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor
        )
        # Recorded now, happened when it was paid (a bank transfer entered days later): the trail shows that day.
        with audit_occurred_at(paid_at):
            amount = format_money(amount_minor, invoice.currency, invoice.customer.country)
            audit_record(
                customer=invoice.customer,
                actor=actor,
                action="invoice.payment_recorded",
                obj=invoice,
                summary=f"Payment of {amount} on {invoice.number}",
                after={"amount_minor": amount_minor, "currency": invoice.currency, "reference": reference},
            )
            if invoice.amount_due_minor == 0:
                invoice.paid_at = paid_at or timezone.now()
                invoice_transition(invoice, InvoiceStatus.PAID, actor=actor, reason=reference or "Paid in full.")
        invoice.save()
    return invoice


def invoice_mark_uncollectible(*, invoice_id: int, reason: str = "", actor: User | None = None) -> Invoice:
    """Write off an open invoice (dunning's final step or staff). A later payment still settles it."""
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        invoice_transition(invoice, InvoiceStatus.UNCOLLECTIBLE, actor=actor, reason=reason)
        invoice.save()
    return invoice
