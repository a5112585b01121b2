"""Collecting money for invoices: manual (bank transfer) payments, and cards through Stripe.

Backends (docs/payments.md): `manual` is the zero-setup default; `stripe` is on when settings.STRIPE_SECRET_KEY is
set. Only billing.stripe_client talks to Stripe; this module decides what to ask and records what happened.

Guarantees:
- never charge an invoice twice: every attempt is a Payment row, unique per (invoice, attempt), written and
  committed BEFORE Stripe is called; the Stripe idempotency key is derived from the same pair, so a retried request
  (a crashed worker, a duplicate task) returns the first result instead of charging again;
- a payment is applied to its invoice exactly once (`Payment.applied_at`, set under a row lock);
- Stripe's answer is never trusted from event order: `payment_sync_from_stripe` fetches the PaymentIntent's
  current state and moves the Payment only along PAYMENT_TRANSITIONS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, models, transaction
from django.db.models import Max, Q
from django.utils import timezone

from billing import stripe_client
from billing.dispatch_shim import enqueue_on_commit
from billing.exceptions import (
    BillingError,
    CardDeclined,
    NotFound,
    PaymentInvalid,
    PaymentMethodNotSaved,
    PaymentNotPossible,
    PaymentProviderUnavailable,
)
from billing.locks import billing_rows_lock
from billing.models import (
    CreditNote,
    ExternalRefund,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    StripeCustomer,
)
from billing.money import format_money
from billing.services import invoices as invoice_services
from billing.services.events import payment_event_record
from billing.services.stripe_customers import (  # noqa: F401  (re-exported: this module's public API)
    BACKEND_MANUAL,
    BACKEND_STRIPE,
    payment_backend,
    stripe_customer_ensure,
    stripe_customer_sync,
    stripe_customer_sync_enqueue,
)
from billing.services.transitions import transition_allowed, transition_set
from subscriptions.models import Customer, User
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


@dataclass(frozen=True)
class CardSetup:
    setup_intent_id: str
    client_secret: str


def payment_method_setup_start(*, customer_id: int, actor: User | None = None) -> CardSetup:
    """Start saving a card: a SetupIntent (usage off_session) whose client secret the page hands to Stripe.js."""
    if payment_backend() != BACKEND_STRIPE:
        raise PaymentNotPossible("Card payments are not enabled; invoices are paid by bank transfer.")
    link = stripe_customer_ensure(customer_id=customer_id)
    try:
        intent = stripe_client.setup_intent_create(
            customer_id=link.stripe_customer_id, metadata={"continuum_customer_id": str(customer_id)}
        )
    except stripe_client.StripeClientError as error:
        raise PaymentProviderUnavailable(f"Card payments are unavailable right now: {error.message}")
    return CardSetup(setup_intent_id=intent.id, client_secret=intent.client_secret)


# Transient: the `setup_intent.succeeded` webhook task retries, and the card appears once Stripe answers again.
STRIPE_UNREACHABLE_CARD_SAVE = (
    "Stripe could not be reached to confirm the card. If it was saved, it will appear here within a few minutes; "
    "otherwise please try again."
)


def payment_method_save_from_setup_intent(
    *, setup_intent_id: str, customer_id: int | None = None, actor: User | None = None
) -> PaymentMethod:
    """Record the card a succeeded SetupIntent saved. Idempotent (the page and the `setup_intent.succeeded` webhook
    both call it). With `customer_id` (the page), a SetupIntent of another customer is refused as not found.
    The first card becomes the default, at Stripe too (invoice_settings.default_payment_method)."""
    try:
        intent = stripe_client.setup_intent_retrieve(setup_intent_id=setup_intent_id)
    except stripe_client.StripeClientError as error:
        if error.transient:
            raise PaymentProviderUnavailable(STRIPE_UNREACHABLE_CARD_SAVE)
        raise PaymentMethodNotSaved(f"We could not check the card with Stripe: {error.message}")
    link = StripeCustomer.objects.filter(stripe_customer_id=intent.customer_id).first() if intent.customer_id else None
    if link is None or (customer_id is not None and link.customer_id != customer_id):
        raise NotFound("That card setup does not exist.")
    if intent.status != "succeeded" or not intent.payment_method_id:
        raise PaymentMethodNotSaved(
            "The card was not saved: it was declined or its authentication did not complete. "
            "Try again or use another card."
        )
    existing = PaymentMethod.objects.filter(stripe_payment_method_id=intent.payment_method_id).first()
    if existing is not None and existing.removed_at is None:
        return existing
    try:
        card = stripe_client.payment_method_retrieve(payment_method_id=intent.payment_method_id)
    except stripe_client.StripeClientError as error:
        if error.transient:
            raise PaymentProviderUnavailable(STRIPE_UNREACHABLE_CARD_SAVE)
        raise PaymentMethodNotSaved(f"We could not read the card from Stripe: {error.message}")
    make_default = False
    with transaction.atomic():
        Customer.objects.select_for_update().get(pk=link.customer_id)  # serialise default selection per customer
        method, created = PaymentMethod.objects.get_or_create(
            stripe_payment_method_id=card.id,
            defaults={
                "customer_id": link.customer_id,
                "brand": card.brand,
                "last4": card.last4,
                "exp_month": card.exp_month,
                "exp_year": card.exp_year,
            },
        )
        if not created and method.removed_at is None:
            return method
        method.removed_at = None
        if not PaymentMethod.objects.filter(
            customer_id=link.customer_id, is_default=True, removed_at__isnull=True
        ).exists():
            method.is_default = True
            make_default = True
        method.save()
        audit_record(
            customer=method.customer,
            actor=actor,
            action="payment_method.added",
            obj=method,
            summary=f"Card added: {method.label}" + (" (default)" if method.is_default else ""),
            after={"brand": method.brand, "last4": method.last4, "default": method.is_default},
        )
    if make_default:
        _push_default(link.stripe_customer_id, method.stripe_payment_method_id)
    return method


def _push_default(stripe_customer_id: str, stripe_payment_method_id: str) -> None:
    try:
        stripe_client.customer_update(
            customer_id=stripe_customer_id, default_payment_method_id=stripe_payment_method_id
        )
    except stripe_client.StripeClientError as error:
        # Our own default is what automatic collection uses; Stripe's copy is informational.
        logger.warning("could not set Stripe default payment method: %s", error.message)


def _method_for(customer_id: int, payment_method_id: int) -> PaymentMethod:
    method = PaymentMethod.objects.filter(
        pk=payment_method_id, customer_id=customer_id, removed_at__isnull=True
    ).first()
    if method is None:
        raise NotFound("That card does not exist.")
    return method


def payment_method_set_default(*, customer_id: int, payment_method_id: int, actor: User | None = None) -> PaymentMethod:
    """Make one of the customer's cards the one automatic collection charges."""
    with transaction.atomic():
        Customer.objects.select_for_update().get(pk=customer_id)
        method = _method_for(customer_id, payment_method_id)
        if method.is_default:
            return method
        previous = PaymentMethod.objects.filter(customer_id=customer_id, is_default=True, removed_at__isnull=True)
        previous_labels = [m.label for m in previous]
        previous.update(is_default=False)
        method.is_default = True
        method.save(update_fields=["is_default"])
        audit_record(
            customer=method.customer,
            actor=actor,
            action="payment_method.default_changed",
            obj=method,
            summary=f"Default card is now {method.label}",
            before={"default": previous_labels},
            after={"default": method.label},
        )
    link = StripeCustomer.objects.filter(customer_id=customer_id).first()
    if link is not None:
        _push_default(link.stripe_customer_id, method.stripe_payment_method_id)
    return method


def payment_method_remove(*, customer_id: int, payment_method_id: int, actor: User | None = None) -> None:
    """Detach the card at Stripe and forget it; if it was the default, the newest remaining card becomes default."""
    method = _method_for(customer_id, payment_method_id)
    try:
        stripe_client.payment_method_detach(payment_method_id=method.stripe_payment_method_id)
    except stripe_client.StripeCardError as error:
        raise PaymentProviderUnavailable(f"Stripe could not remove the card: {error.message}")
    except stripe_client.StripeUnavailable as error:
        # Already detached (e.g. removed in Stripe's dashboard) is fine; anything else is reported.
        if error.code not in {"payment_method_not_attached", "resource_missing"}:
            raise PaymentProviderUnavailable(f"Stripe could not remove the card: {error.message}")
    _payment_method_forget(method_id=method.pk, actor=actor, summary=f"Card removed: {method.label}")


def payment_method_mark_detached(*, stripe_payment_method_id: str) -> bool:
    """A card was detached at Stripe (`payment_method.detached`): stop using it. Idempotent."""
    method = PaymentMethod.objects.filter(
        stripe_payment_method_id=stripe_payment_method_id, removed_at__isnull=True
    ).first()
    if method is None:
        return False
    _payment_method_forget(method_id=method.pk, actor=None, summary=f"Card removed at Stripe: {method.label}")
    return True


def _payment_method_forget(*, method_id: int, actor: User | None, summary: str) -> None:
    promoted = None
    with transaction.atomic():
        method = PaymentMethod.objects.select_related("customer").get(pk=method_id)
        Customer.objects.select_for_update().get(pk=method.customer_id)
        method.refresh_from_db()
        if method.removed_at is not None:
            return
        was_default = method.is_default
        method.removed_at = timezone.now()
        method.is_default = False
        method.save(update_fields=["removed_at", "is_default"])
        if was_default:
            promoted = (
                PaymentMethod.objects.filter(customer_id=method.customer_id, removed_at__isnull=True)
                .order_by("-created_at", "-id")
                .first()
            )
            if promoted is not None:
                promoted.is_default = True
                promoted.save(update_fields=["is_default"])
        audit_record(
            customer=method.customer,
            actor=actor,
            action="payment_method.removed",
            obj=method,
            summary=summary + (f"; default is now {promoted.label}" if promoted else ""),
            before={"brand": method.brand, "last4": method.last4, "default": was_default},
        )
    if promoted is not None:
        link = StripeCustomer.objects.filter(customer_id=promoted.customer_id).first()
        if link is not None:
            _push_default(link.stripe_customer_id, promoted.stripe_payment_method_id)


def default_payment_method(*, customer_id: int) -> PaymentMethod | None:
    return PaymentMethod.objects.filter(customer_id=customer_id, is_default=True, removed_at__isnull=True).first()


# --- Applying payments to invoices ----------------------------------------------------------------------------------


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
        audit_record(
            customer=invoice.customer,
            actor=actor,
            action="payment.recorded",
            obj=payment,
            summary=f"Bank transfer of {money(amount_minor, invoice.currency, invoice.customer.country)} recorded for "
            f"{invoice} ({reference})",
            after={"amount_minor": amount_minor, "reference": reference},
        )
        payment_event_record(payment)
        _apply_to_invoice(payment.pk)
    payment.refresh_from_db()
    return payment


# --- Card collection ------------------------------------------------------------------------------------------------


def _start_attempt(*, invoice_id: int, method: PaymentMethod | None, off_session: bool) -> Payment | None:
    """Write the next attempt's Payment row (committed before Stripe is called). None when there is nothing to do."""
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().filter(pk=invoice_id).first()
        if invoice is None:
            raise NotFound("That invoice does not exist.")
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.amount_due_minor <= 0:
            return None
        if Payment.objects.filter(invoice=invoice, status__in=IN_FLIGHT_STATUSES).exists():
            return None
        if method is None:
            method = default_payment_method(customer_id=invoice.customer_id)
            if method is None:
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
    method = _method_for(customer_id, payment_method_id)
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


def _card_refund_target(invoice_id: int) -> tuple[Payment | None, int]:
    """The invoice's newest succeeded card payment that still holds money, and how much it holds (not yet refunded
    or being refunded). Call inside a transaction that locks the payments when acting on the answer."""
    payments = (
        Payment.objects.filter(invoice_id=invoice_id, kind=PaymentKind.CARD, status=PaymentStatus.SUCCEEDED)
        .exclude(stripe_payment_intent_id="")
        .prefetch_related("refunds")
        .order_by("-attempt")
    )
    for payment in payments:
        refunded = sum(r.amount_minor for r in payment.refunds.all() if r.status != RefundStatus.FAILED)
        if payment.amount_minor - refunded > 0:
            return payment, payment.amount_minor - refunded
    return None, 0


def _audit_refund_owed(credit_note: CreditNote, amount_minor: int, *, actor: User | None, why: str) -> None:
    audit_record(
        customer=credit_note.customer,
        actor=actor,
        action="refund.owed",
        obj=credit_note,
        summary=f"{money(amount_minor, credit_note.currency)} of {credit_note} is owed back to the customer by bank "
        f"transfer ({why}); record it on the credit note once paid",
        after={"amount_minor": amount_minor, "credit_note": credit_note.number},
    )


def credit_note_refund(*, credit_note_id: int, actor: User | None = None) -> Refund | None:
    """Refund a credit note's `refund_due_minor` to the card that paid the invoice, through Stripe, at most once.

    The refund goes against the invoice's newest succeeded card payment for at most what that payment still holds;
    if that is less than is due back, the rest is recorded as owed by bank transfer (`refund.owed`). Returns the
    existing refund when there is one (a re-run never refunds twice: unique `Refund.credit_note`, and a pending
    refund is resent with the same Stripe idempotency key). None when nothing is due back or the invoice has no
    card payment (paid by bank transfer: billing staff refund by transfer, `credit_note_refund_record_manual`).
    Raises PaymentProviderUnavailable when Stripe cannot be reached (the refund stays pending; the task retries).
    """
    credit_note = CreditNote.objects.select_related("invoice", "customer").filter(pk=credit_note_id).first()
    if credit_note is None:
        raise NotFound("That credit note does not exist.")
    existing = Refund.objects.filter(credit_note=credit_note).first()
    if existing is not None and existing.status != RefundStatus.PENDING:
        return existing
    if existing is None:
        if credit_note.refund_due_minor <= 0:
            return None
        with transaction.atomic():
            # Lock the invoice's payments so two credit notes of one invoice never both count the same money.
            billing_rows_lock(payments=Q(invoice_id=credit_note.invoice_id))
            target, refundable = _card_refund_target(credit_note.invoice_id)
            if target is None:
                return None
            amount = min(credit_note.refund_due_minor, refundable)
            try:
                with transaction.atomic():
                    existing = Refund.objects.create(
                        credit_note=credit_note, payment=target, amount_minor=amount, currency=target.currency
                    )
            except IntegrityError:
                return Refund.objects.get(credit_note=credit_note)
            if amount < credit_note.refund_due_minor:
                _audit_refund_owed(
                    credit_note,
                    credit_note.refund_due_minor - amount,
                    actor=actor,
                    why=f"the card payment only held {money(refundable, target.currency)}",
                )
    refund = existing
    try:
        result = stripe_client.refund_create(
            payment_intent_id=refund.payment.stripe_payment_intent_id,
            amount_minor=refund.amount_minor,
            metadata={"continuum_credit_note_id": str(credit_note.pk), "credit_note_number": credit_note.number},
            idempotency_key=refund.idempotency_key,
        )
    except stripe_client.StripeClientError as error:
        Refund.objects.filter(pk=refund.pk).update(failure_message=error.message[:300])
        raise PaymentProviderUnavailable(f"Stripe did not refund {credit_note}: {error.message}")
    with transaction.atomic():
        # The same locks as refund_sync_from_charge, which also writes refund status: the payment, then its refund.
        refund = billing_rows_lock(payments=Q(pk=refund.payment_id), refunds=Q(pk=refund.pk)).refund
        if refund.status == RefundStatus.PENDING:
            refund.stripe_refund_id = result.id
            transition_set(
                refund, RefundStatus.SUCCEEDED if result.status in ("succeeded", "pending") else RefundStatus.FAILED
            )
            refund.failure_message = "" if refund.status == RefundStatus.SUCCEEDED else f"Stripe status {result.status}"
            refund.save()
            audit_record(
                customer=refund.payment.customer,
                actor=actor,
                action=f"refund.{refund.status}",
                obj=refund,
                summary=f"Refund of {money(refund.amount_minor, refund.currency)} to the card for {credit_note}",
                after={"stripe_refund_id": result.id, "status": result.status},
            )
    return refund


def credit_note_refund_enqueue(*, credit_note_id: int, actor: User | None = None) -> None:
    """For billing's credit-note service, inside its issuing transaction, when a credit note gives money back
    (`refund_due_minor` > 0): start the refund the way the invoice was paid.

    - Paid by card through Stripe (and the stripe backend is on): `billing.credit_note_refund` is queued after
      commit; it refunds at most once per credit note, so queuing twice is harmless.
    - Otherwise (paid by bank transfer, or the manual backend): a `refund.owed` audit event puts the amount on the
      customer's timeline; billing staff pay it by transfer and record it (`credit_note_refund_record_manual`).
    """
    credit_note = CreditNote.objects.select_related("customer").get(pk=credit_note_id)
    if credit_note.refund_due_minor <= 0 or Refund.objects.filter(credit_note=credit_note).exists():
        return
    target, _ = _card_refund_target(credit_note.invoice_id)
    if target is None or payment_backend() != BACKEND_STRIPE:
        why = "the invoice was paid by bank transfer" if target is None else "card refunds need Stripe configured"
        _audit_refund_owed(credit_note, credit_note.refund_due_minor, actor=actor, why=why)
        return
    enqueue_on_commit("billing.credit_note_refund", credit_note_id=credit_note_id)


def credit_note_refund_record_manual(*, credit_note_id: int, reference: str, actor: User | None) -> Refund:
    """Billing staff paid a credit note's `refund_due_minor` back by bank transfer: record it (a succeeded Refund
    against the invoice's newest succeeded payment, bank transfers first) with the bank reference, and audit it.

    Refuses when nothing is due back, when the credit note already has a refund (e.g. the card refund), or without a
    reference. Locks the credit note, so a double submit records once.
    """
    reference = (reference or "").strip()
    if not reference:
        raise PaymentInvalid("Enter the bank reference of the refund transfer.", field="reference")
    with transaction.atomic():
        credit_note = (
            CreditNote.objects.select_for_update().select_related("customer").filter(pk=credit_note_id).first()
        )
        if credit_note is None:
            raise NotFound("That credit note does not exist.")
        if credit_note.refund_due_minor <= 0:
            raise PaymentInvalid(f"Nothing of {credit_note} had been paid, so nothing goes back to the customer.")
        existing = Refund.objects.filter(credit_note=credit_note).first()
        if existing is not None:
            how = (
                f"by transfer ({existing.reference})"
                if existing.reference
                else f"to the card (refund {existing.get_status_display().lower()})"
            )
            raise PaymentInvalid(f"{credit_note} is already refunded {how}.")
        payment = (
            Payment.objects.filter(invoice_id=credit_note.invoice_id, status=PaymentStatus.SUCCEEDED)
            .order_by(
                # bank transfers first, then the newest
                models.Case(models.When(kind=PaymentKind.MANUAL, then=0), default=1),
                "-attempt",
            )
            .first()
        )
        if payment is None:
            raise PaymentInvalid(f"No payment is recorded for {credit_note.invoice}; nothing can be refunded.")
        refund = Refund.objects.create(
            credit_note=credit_note,
            payment=payment,
            amount_minor=credit_note.refund_due_minor,
            currency=credit_note.currency,
            status=RefundStatus.SUCCEEDED,
            reference=reference,
            recorded_by=actor,
        )
        audit_record(
            customer=credit_note.customer,
            actor=actor,
            action="refund.recorded",
            obj=refund,
            summary=f"Refund of {money(refund.amount_minor, refund.currency)} for {credit_note} paid by bank "
            f"transfer ({reference})",
            after={"amount_minor": refund.amount_minor, "reference": reference},
        )
    return refund


def refund_sync_from_charge(*, stripe_charge_id: str) -> list[Refund]:
    """`charge.refunded`: reconcile the charge's refunds from Stripe's own refund objects (`Refund.list(charge=…)`),
    never from the event's amounts — events repeat and arrive out of order, so only Stripe's current list converges.

    Our refunds (matched by Stripe refund id, or by the `continuum_credit_note_id` metadata we send, when a crash lost
    the id) take Stripe's status. Every other Stripe refund is an `ExternalRefund`, recorded once per Stripe id with one
    `refund.external` timeline entry telling billing staff to issue a matching credit note (and one
    `refund.external_failed` entry if Stripe later reports it failed or canceled). Idempotent; locks the payment.
    Raises PaymentProviderUnavailable when Stripe cannot be reached (the event is retried).
    """
    payment = Payment.objects.select_related("customer", "invoice").filter(stripe_charge_id=stripe_charge_id).first()
    if payment is None:
        return []
    try:
        at_stripe = stripe_client.refund_list_for_charge(charge_id=stripe_charge_id)
    except stripe_client.StripeClientError as error:
        raise PaymentProviderUnavailable(
            f"Could not read the refunds of {stripe_charge_id} from Stripe: {error.message}"
        )
    with transaction.atomic():
        refunds = billing_rows_lock(payments=Q(pk=payment.pk), refunds=Q(payment_id=payment.pk)).refunds
        by_id = {r.stripe_refund_id: r for r in refunds if r.stripe_refund_id}
        by_credit_note = {str(r.credit_note_id): r for r in refunds if not r.stripe_refund_id}
        known_external = {e.stripe_refund_id: e for e in payment.external_refunds.select_for_update()}
        for stripe_refund in at_stripe:
            ours = by_id.get(stripe_refund.id) or by_credit_note.get(
                str(stripe_refund.metadata.get("continuum_credit_note_id", ""))
            )
            if ours is not None:
                _refund_take_stripe_status(ours, stripe_refund)
                continue
            _external_refund_record(payment, stripe_refund, known_external.get(stripe_refund.id))
    return refunds


_STRIPE_REFUND_DONE = {
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
}


def _refund_take_stripe_status(refund: Refund, stripe_refund: stripe_client.Refund) -> None:
    status = _STRIPE_REFUND_DONE.get(stripe_refund.status)
    changed = []
    if not refund.stripe_refund_id:
        refund.stripe_refund_id = stripe_refund.id
        changed.append("stripe_refund_id")
    if status is not None and refund.status != status and not transition_allowed(refund, status):
        logger.info("refund %s: ignoring Stripe's %s (it is %s)", refund.pk, stripe_refund.status, refund.status)
    elif status is not None and refund.status != status:
        transition_set(refund, status)
        refund.failure_message = "" if status == RefundStatus.SUCCEEDED else f"Stripe status {stripe_refund.status}"
        changed += ["status", "failure_message"]
    if changed:
        refund.save(update_fields=[*changed, "updated_at"])


def _external_refund_record(
    payment: Payment, stripe_refund: stripe_client.Refund, known: ExternalRefund | None
) -> None:
    failed = stripe_refund.status in ("failed", "canceled")
    currency = stripe_refund.currency or payment.currency
    amount = money(stripe_refund.amount_minor, currency)
    if known is None:
        if failed:
            return  # it never moved money: nothing for staff to match
        ExternalRefund.objects.create(
            payment=payment,
            stripe_refund_id=stripe_refund.id,
            amount_minor=stripe_refund.amount_minor,
            currency=currency,
            status=stripe_refund.status,
        )
        audit_record(
            customer=payment.customer,
            action="refund.external",
            obj=payment,
            summary=f"{amount} of the payment for {payment.invoice} was refunded outside Continuum "
            f"(Stripe refund {stripe_refund.id}); issue a credit note to match",
            after={"stripe_refund_id": stripe_refund.id, "amount_minor": stripe_refund.amount_minor},
        )
        return
    if known.status != stripe_refund.status:
        was_failed = known.status in ("failed", "canceled")
        known.status = stripe_refund.status
        known.save(update_fields=["status", "updated_at"])
        if failed and not was_failed:
            audit_record(
                customer=payment.customer,
                action="refund.external_failed",
                obj=payment,
                summary=f"The refund of {amount} made outside Continuum (Stripe refund {stripe_refund.id}) "
                f"{stripe_refund.status}: no credit note is needed for it",
            )
