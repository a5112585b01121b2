"""Collecting an invoice: attempts (card, off-session or pay-now; bank transfers recorded by staff), applying a
payment's outcome exactly once, and telling the listeners (dunning) what happened.

Guarantees (no double charge, applied once, never moved backwards by stale news): see the package docstring.
About 480 lines, kept whole on purpose: a payment's attempt, its outcome and the application of its money are one
state machine (PAYMENT_TRANSITIONS) read top to bottom; splitting it would scatter the row-lock discipline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from billing import stripe_client
from billing.exceptions import (
    BillingError,
    CardDeclined,
    NotFound,
    PaymentInvalid,
    PaymentNotPossible,
    PaymentProviderUnavailable,
)
from billing.locks import billing_rows_lock
from billing.models import (
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Refund,
)
from billing.money import format_money
from billing.services import invoices as invoice_services
from billing.services.events import payment_event_record
from billing.services.payments.cards import default_payment_method, payment_method_for
from billing.services.stripe_customers import (
    BACKEND_STRIPE,
    payment_backend,
    stripe_customer_ensure,
)
from billing.services.transitions import transition_allowed, transition_set
from subscriptions.models import User
from subscriptions.services.audit import audit_record

logger = logging.getLogger(__name__)


# Payments that may still turn into money: while one exists, no new attempt is started.
IN_FLIGHT_STATUSES = (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION)

# Stripe PaymentIntent status → our payment status.
_INTENT_STATUS = {
    "succeeded": PaymentStatus.SUCCEEDED,
    "processing": PaymentStatus.PROCESSING,
    "requires_action": PaymentStatus.REQUIRES_ACTION,
    "requires_confirmation": PaymentStatus.REQUIRES_ACTION,
    "requires_payment_method": PaymentStatus.FAILED,
    "canceled": PaymentStatus.CANCELED,
    "requires_capture": PaymentStatus.PROCESSING,
}


# What happens after a payment's outcome is the business of dunning, a layer above this one: it listens here
# (registered in billing/apps.py) instead of being imported, so payments never imports upward. Each listener is
# called inside the transaction that holds the payment's row lock, with `invoice_id=` and `payment_id=`.
PaymentListener = Callable[..., object]
_LISTENERS: dict[str, list[PaymentListener]] = {"succeeded": [], "failed": []}


def payment_outcome_listen(*, succeeded: PaymentListener | None = None, failed: PaymentListener | None = None) -> None:
    """Register what to do once a payment is applied to its invoice (`succeeded`) or once an off-session
    (automatic) payment fails or needs the card holder (`failed`). Registering the same function twice is a no-op."""
    for outcome, listener in (("succeeded", succeeded), ("failed", failed)):
        if listener is not None and listener not in _LISTENERS[outcome]:
            _LISTENERS[outcome].append(listener)


def _payment_outcome_tell(outcome: str, payment: Payment) -> None:
    for listener in _LISTENERS[outcome]:
        listener(invoice_id=payment.invoice_id, payment_id=payment.pk)


def money(amount_minor: int, currency: str, country: str = "US") -> str:
    """`$12.34` — for audit summaries and e-mails, formatted as the portal formats money (billing.money)."""
    return format_money(amount_minor, currency, country)


# --- Saved cards ----------------------------------------------------------------------------------------------------


def _payment_transition(payment: Payment, to_status: str) -> bool:
    """Move a (locked) payment along PAYMENT_TRANSITIONS; False (and no change) when the move is not allowed, which
    is how stale or out-of-order news is ignored."""
    if payment.status == to_status:
        return False
    if not transition_allowed(payment, to_status):
        logger.info("payment %s: ignoring %s → %s", payment.pk, payment.status, to_status)
        return False
    transition_set(payment, to_status)
    return True


def _payment_lock(payment_id: int) -> Payment:
    """Lock a payment and, first, its invoice (billing.locks order: invoice → payment), inside the caller's
    transaction: what follows a payment's outcome (applying it, dunning) locks the invoice as well."""
    invoice_id = Payment.objects.values_list("invoice_id", flat=True).get(pk=payment_id)
    return billing_rows_lock(invoices=Q(pk=invoice_id), payments=Q(pk=payment_id)).payment


def _apply_to_invoice(payment_id: int) -> None:
    """Apply a succeeded payment to its invoice exactly once, then let dunning know."""
    with transaction.atomic():
        payment = _payment_lock(payment_id)
        if payment.applied_at is not None or payment.status != PaymentStatus.SUCCEEDED:
            return
        try:
            invoice_services.invoice_apply_payment(
                invoice_id=payment.invoice_id,
                amount_minor=payment.amount_minor,
                currency=payment.currency,
                actor=payment.recorded_by,
                reference=_reference(payment),
            )
        except BillingError as error:
            # E.g. staff recorded a transfer for the same invoice meanwhile: the money is ours but the invoice is
            # settled — billing staff must refund it. Keep it visible rather than failing the whole task.
            payment.failure_message = f"Not applied: {error.message}"[:300]
            payment.save(update_fields=["failure_message", "updated_at"])
            audit_record(
                customer=payment.customer,
                action="payment.not_applied",
                obj=payment,
                summary=f"Payment of {money(payment.amount_minor, payment.currency)} could not be applied to "
                f"{payment.invoice}: {error.message}",
            )
            return
        payment.applied_at = timezone.now()
        payment.save(update_fields=["applied_at", "updated_at"])
        _payment_outcome_tell("succeeded", payment)


def _reference(payment: Payment) -> str:
    if payment.kind == PaymentKind.MANUAL:
        return payment.reference
    return payment.stripe_payment_intent_id or f"payment {payment.pk}"


def _next_attempt(invoice_id: int) -> int:
    return (Payment.objects.filter(invoice_id=invoice_id).aggregate(n=Max("attempt"))["n"] or 0) + 1


def payment_record_manual(*, invoice_id: int, amount_minor: int, reference: str, actor: User | None) -> Payment:
    """Record a bank transfer billing staff received, and apply it to the invoice (billing's invoice_apply_payment
    marks it paid when nothing is due any more). Refuses a non-positive amount, more than is due, or an invoice that
    is not open or uncollectible."""
    if not isinstance(amount_minor, int) or amount_minor <= 0:
        raise PaymentInvalid("The amount must be a positive number of cents.")
    reference = (reference or "").strip()
    if not reference:
        raise PaymentInvalid("Enter the bank reference of the transfer.", field="reference")
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
        if invoice is None:
            raise NotFound("That invoice does not exist.")
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            raise PaymentInvalid(f"Invoice {invoice} is {invoice.get_status_display().lower()}; nothing can be paid.")
        if amount_minor > invoice.amount_due_minor:
            raise PaymentInvalid(
                f"{money(amount_minor, invoice.currency)} is more than the "
                f"{money(invoice.amount_due_minor, invoice.currency)} due on {invoice}."
            )
        payment = Payment.objects.create(
            invoice=invoice,
            customer_id=invoice.customer_id,
            attempt=_next_attempt(invoice.pk),
            kind=PaymentKind.MANUAL,
            amount_minor=amount_minor,
            currency=invoice.currency,
            status=PaymentStatus.SUCCEEDED,
            reference=reference,
            recorded_by=actor,
        )
        bank_transfer_audit(
            payment,
            invoice.customer,
            actor,
            "payment.recorded",
            f"Bank transfer of {money(amount_minor, invoice.currency, invoice.customer.country)} recorded for "
            f"{invoice} ({reference})",
        )
        payment_event_record(payment)
        _apply_to_invoice(payment.pk)
    payment.refresh_from_db()
    return payment


def bank_transfer_audit(record: Payment | Refund, customer, actor: User | None, action: str, summary: str) -> None:
    """The audit entry for a bank transfer staff recorded — money in (a `Payment`) or out (a `Refund`): its amount
    and bank reference."""
    audit_record(
        customer=customer,
        actor=actor,
        action=action,
        obj=record,
        summary=summary,
        after={"amount_minor": record.amount_minor, "reference": record.reference},
    )


# --- Card collection ------------------------------------------------------------------------------------------------


def _start_attempt(*, invoice_id: int, method: PaymentMethod | None, off_session: bool) -> Payment | None:
    """Write the next attempt's Payment row (committed before Stripe is called). None when there is nothing to do."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
        if invoice is None:
            raise NotFound("That invoice does not exist.")
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.amount_due_minor <= 0:
            return None
        if method is None:  # first: most invoices belong to customers without a card, and need nothing more
            method = default_payment_method(customer_id=invoice.customer_id)
            if method is None:
                return None
        if Payment.objects.filter(invoice=invoice, status__in=IN_FLIGHT_STATUSES).exists():
            return None
        return Payment.objects.create(
            invoice=invoice,
            customer_id=invoice.customer_id,
            attempt=_next_attempt(invoice.pk),
            kind=PaymentKind.CARD,
            amount_minor=invoice.amount_due_minor,
            currency=invoice.currency,
            status=PaymentStatus.PENDING,
            off_session=off_session,
            payment_method=method,
        )


def _send_attempt(payment: Payment) -> stripe_client.PaymentIntent | None:
    """Ask Stripe to charge `payment` (same idempotency key on every call for this attempt) and record the answer.
    Returns the PaymentIntent, or None when Stripe could not be reached (the payment stays pending; resending it
    later with `payment_resume` is safe)."""
    link = stripe_customer_ensure(customer_id=payment.customer_id)
    method = payment.payment_method
    if method is None:
        _payment_fail(payment.pk, code="no_card", message="The card was removed before it could be charged.")
        return None
    try:
        intent = stripe_client.payment_intent_create_and_confirm(
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            customer_id=link.stripe_customer_id,
            payment_method_id=method.stripe_payment_method_id,
            off_session=payment.off_session,
            metadata={
                "continuum_invoice_id": str(payment.invoice_id),
                "continuum_payment_id": str(payment.pk),
                "continuum_attempt": str(payment.attempt),
                "invoice_number": str(payment.invoice.number or ""),
            },
            idempotency_key=payment.idempotency_key,
        )
    except stripe_client.StripeCardError as error:
        _payment_fail(payment.pk, code=error.code, message=error.message, payment_intent_id=error.payment_intent_id)
        return None
    except stripe_client.StripeUnavailable as error:
        logger.warning("payment %s left pending: %s", payment.pk, error.message)
        Payment.objects.filter(pk=payment.pk).update(failure_message=f"Waiting for Stripe: {error.message}"[:300])
        return None
    _payment_apply_intent(payment.pk, intent)
    return intent


def _payment_fail(payment_id: int, *, code: str, message: str, payment_intent_id: str = "") -> None:
    with transaction.atomic():
        payment = _payment_lock(payment_id)
        if payment_intent_id and not payment.stripe_payment_intent_id:
            payment.stripe_payment_intent_id = payment_intent_id
        if not _payment_transition(payment, PaymentStatus.FAILED):
            payment.save()
            return
        payment.failure_code = code[:60]
        payment.failure_message = message[:300]
        payment.save()
        _audit_outcome(payment)
        if payment.off_session:
            # Automatic collection failed with nobody present: dunning tells the billing contacts. A customer on the
            # pay-now page sees the failure right there instead.
            _payment_outcome_tell("failed", payment)


def _payment_apply_intent(payment_id: int, intent: stripe_client.PaymentIntent) -> Payment:
    """Move the payment to the PaymentIntent's current state (never backwards), and apply money once."""
    to_status = _INTENT_STATUS.get(intent.status, PaymentStatus.PROCESSING)
    if to_status == PaymentStatus.FAILED:
        _payment_fail(
            payment_id,
            code=intent.failure_code or "payment_failed",
            message=intent.failure_message or "The payment failed.",
            payment_intent_id=intent.id,
        )
        return Payment.objects.get(pk=payment_id)
    with transaction.atomic():
        payment = _payment_lock(payment_id)
        payment.stripe_payment_intent_id = payment.stripe_payment_intent_id or intent.id
        if intent.latest_charge_id:
            payment.stripe_charge_id = intent.latest_charge_id
        moved = _payment_transition(payment, to_status)
        if moved and to_status == PaymentStatus.SUCCEEDED:
            payment.failure_code = ""
            payment.failure_message = ""
        payment.save()
        if moved:
            _audit_outcome(payment)
            if to_status == PaymentStatus.REQUIRES_ACTION and payment.off_session:
                _payment_outcome_tell("failed", payment)
        if payment.status == PaymentStatus.SUCCEEDED:
            _apply_to_invoice(payment.pk)
    payment.refresh_from_db()
    return payment


def _audit_outcome(payment: Payment) -> None:
    amount = money(payment.amount_minor, payment.currency, payment.customer.country)
    card = payment.payment_method.label if payment.payment_method_id else "card"
    summaries = {
        PaymentStatus.SUCCEEDED: f"Paid {amount} for {payment.invoice} with {card}",
        PaymentStatus.FAILED: f"Payment of {amount} for {payment.invoice} failed: {payment.failure_message}",
        PaymentStatus.REQUIRES_ACTION: f"Payment of {amount} for {payment.invoice} needs the card holder's approval",
        PaymentStatus.PROCESSING: f"Payment of {amount} for {payment.invoice} is processing",
        PaymentStatus.CANCELED: f"Payment of {amount} for {payment.invoice} was canceled",
    }
    payment_event_record(payment)
    audit_record(
        customer=payment.customer,
        action=f"payment.{payment.status}",
        obj=payment,
        summary=summaries.get(payment.status, f"Payment {payment.status}"),
        after={
            "attempt": payment.attempt,
            "status": payment.status,
            "payment_intent": payment.stripe_payment_intent_id,
        },
    )


def invoice_collect(*, invoice_id: int) -> Payment | None:
    """Charge an issued invoice to the customer's default card, off-session (automatic collection).

    Called once an issued invoice is e-mailed (`invoice_payment_collect`, from the after-issue task) and by dunning
    retries. Does nothing (None) with the manual backend, without a default card, when nothing is due, or while
    another attempt is in flight.
    A failure leaves the invoice open and starts dunning; a success applies the payment to the invoice.
    """
    if payment_backend() != BACKEND_STRIPE:
        return None
    payment = _start_attempt(invoice_id=invoice_id, method=None, off_session=True)
    if payment is None:
        return None
    _send_attempt(payment)
    payment.refresh_from_db()
    return payment


def invoice_payment_collect(*, invoice_id: int) -> Payment | None:
    """The hook billing's `invoice_after_issue` task calls once an issued invoice is e-mailed: collect it now.
    A Stripe outage must not fail that task (the PDF and e-mail are done): it is logged and the payment, if one was
    started, stays pending for `payment_resume`."""
    try:
        return invoice_collect(invoice_id=invoice_id)
    except BillingError as error:
        logger.warning("invoice %s: automatic collection not started: %s", invoice_id, error.message)
        return None


def payment_resume(*, payment_id: int) -> Payment:
    """Resend a payment left pending (Stripe unreachable). Same idempotency key, so never a second charge."""
    payment = Payment.objects.select_related("invoice", "payment_method").get(pk=payment_id)
    if payment.status == PaymentStatus.PENDING and payment.kind == PaymentKind.CARD:
        _send_attempt(payment)
        payment.refresh_from_db()
    return payment


@dataclass(frozen=True)
class PayNowResult:
    payment: Payment
    client_secret: str  # set when the card holder must authenticate in the browser (Stripe.js confirmCardPayment)

    @property
    def requires_action(self) -> bool:
        return self.payment.status == PaymentStatus.REQUIRES_ACTION


def invoice_pay_now(*, invoice_id: int, customer_id: int, payment_method_id: int, actor: User | None) -> PayNowResult:
    """The customer pays an open invoice now with one of their saved cards (on-session, so cards that need 3-D
    Secure can authenticate: the result then carries the client secret for Stripe.js)."""
    if payment_backend() != BACKEND_STRIPE:
        raise PaymentNotPossible("Card payments are not enabled; please pay by bank transfer.")
    invoice = Invoice.objects.filter(pk=invoice_id, customer_id=customer_id).first()
    if invoice is None:
        raise NotFound("That invoice does not exist.")
    method = payment_method_for(customer_id, payment_method_id)
    in_flight = Payment.objects.filter(invoice=invoice, status__in=IN_FLIGHT_STATUSES).order_by("-attempt").first()
    if in_flight is not None:
        # A previous attempt is still open, e.g. waiting for authentication: continue it instead of charging twice.
        in_flight = (
            payment_sync_from_stripe(payment_id=in_flight.pk) if in_flight.stripe_payment_intent_id else in_flight
        )
        if in_flight.status in IN_FLIGHT_STATUSES:
            return PayNowResult(payment=in_flight, client_secret=_client_secret(in_flight))
    payment = _start_attempt(invoice_id=invoice.pk, method=method, off_session=False)
    if payment is None:
        invoice.refresh_from_db()
        raise PaymentNotPossible(f"Invoice {invoice} has nothing left to pay.")
    audit_record(
        customer=invoice.customer,
        actor=actor,
        action="payment.started",
        obj=payment,
        summary=f"Pay now: {money(payment.amount_minor, payment.currency)} for {invoice} with {method.label}",
    )
    intent = _send_attempt(payment)
    payment.refresh_from_db()
    if payment.status == PaymentStatus.FAILED:
        raise CardDeclined(payment.failure_message or "Your card was declined.")
    return PayNowResult(payment=payment, client_secret=intent.client_secret if intent else "")


def _client_secret(payment: Payment) -> str:
    if not payment.stripe_payment_intent_id:
        return ""
    try:
        return stripe_client.payment_intent_retrieve(payment_intent_id=payment.stripe_payment_intent_id).client_secret
    except stripe_client.StripeClientError:
        return ""


def payment_sync_from_stripe(*, payment_id: int | None = None, payment_intent_id: str = "") -> Payment | None:
    """Fetch the PaymentIntent's CURRENT state from Stripe and move our payment to it. Used by webhooks (whatever
    their order) and by the pay-now page after Stripe.js authentication. Finds the payment by intent id, or by the
    metadata we put on the intent (if we crashed before storing its id)."""
    payment = None
    if payment_id is not None:
        payment = Payment.objects.filter(pk=payment_id).first()
        payment_intent_id = payment_intent_id or (payment.stripe_payment_intent_id if payment else "")
    if not payment_intent_id:
        return payment
    try:
        intent = stripe_client.payment_intent_retrieve(payment_intent_id=payment_intent_id)
    except stripe_client.StripeClientError as error:
        raise PaymentProviderUnavailable(f"Could not reach Stripe: {error.message}")
    if payment is None:
        payment = Payment.objects.filter(stripe_payment_intent_id=intent.id).first()
    if payment is None and intent.metadata.get("continuum_payment_id", "").isdigit():
        payment = Payment.objects.filter(
            pk=int(intent.metadata["continuum_payment_id"]), kind=PaymentKind.CARD, stripe_payment_intent_id=""
        ).first()
    if payment is None:
        return None
    return _payment_apply_intent(payment.pk, intent)


def payment_mark_disputed(
    *, stripe_charge_id: str = "", payment_intent_id: str = "", reason: str = ""
) -> Payment | None:
    """A charge was disputed (`charge.dispute.created`): flag the payment and put it on the customer's timeline for
    billing staff. The invoice stays paid: Stripe holds the money until the dispute is decided."""
    payment = None
    if payment_intent_id:
        payment = Payment.objects.filter(stripe_payment_intent_id=payment_intent_id).first()
    if payment is None and stripe_charge_id:
        payment = Payment.objects.filter(stripe_charge_id=stripe_charge_id).first()
    if payment is None:
        return None
    with transaction.atomic():
        payment = _payment_lock(payment.pk)
        if payment.disputed_at is not None:
            return payment
        payment.disputed_at = timezone.now()
        payment.save(update_fields=["disputed_at", "updated_at"])
        audit_record(
            customer=payment.customer,
            action="payment.disputed",
            obj=payment,
            summary=f"The card holder disputed {money(payment.amount_minor, payment.currency)} paid for "
            f"{payment.invoice}" + (f" ({reason})" if reason else ""),
            after={"reason": reason},
        )
    return payment


# --- Refunds --------------------------------------------------------------------------------------------------------
