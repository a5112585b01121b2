"""Refunds: giving a credit note's money back to the card through Stripe or by bank transfer, and taking Stripe's
word on refunds (ours and those made outside Continuum).
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, models, transaction
from django.db.models import Q

from billing import stripe_client
from billing.exceptions import (
    NotFound,
    PaymentInvalid,
    PaymentProviderUnavailable,
)
from billing.locks import billing_rows_lock
from billing.models import (
    CreditNote,
    ExternalRefund,
    Payment,
    PaymentKind,
    PaymentStatus,
    Refund,
    RefundStatus,
)
from billing.services.payments.collection import bank_transfer_audit, money
from billing.services.stripe_customers import (
    BACKEND_STRIPE,
    payment_backend,
)
from billing.services.transitions import transition_allowed, transition_set
from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models import User
from subscriptions.services.audit import audit_record

logger = logging.getLogger(__name__)


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


def credit_note_refund_awaits_card(*, credit_note: CreditNote) -> bool:
    """True when the credit note's refund is the card refund task's to make and it has not started: something is
    due back, no Refund row exists, the invoice has a card payment still holding money, and Stripe is the backend
    (exactly when `credit_note_refund_enqueue` queues the task instead of recording `refund.owed`)."""
    if credit_note.refund_due_minor <= 0 or payment_backend() != BACKEND_STRIPE:
        return False
    if Refund.objects.filter(credit_note=credit_note).exists():
        return False
    target, _ = _card_refund_target(credit_note.invoice_id)
    return target is not None


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
        bank_transfer_audit(
            refund,
            credit_note.customer,
            actor,
            "refund.recorded",
            f"Refund of {money(refund.amount_minor, refund.currency)} for {credit_note} paid by bank transfer "
            f"({reference})",
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
