"""Saved cards: setting one up through a Stripe SetupIntent, saving it, the default card (also at Stripe), removal."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from billing import stripe_client
from billing.exceptions import (
    NotFound,
    PaymentMethodNotSaved,
    PaymentNotPossible,
    PaymentProviderUnavailable,
)
from billing.models import (
    PaymentMethod,
    StripeCustomer,
)
from billing.services.stripe_customers import (
    BACKEND_STRIPE,
    payment_backend,
    stripe_customer_ensure,
)
from subscriptions.models import Customer, User
from subscriptions.services.audit import audit_record

logger = logging.getLogger(__name__)


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


def payment_method_for(customer_id: int, payment_method_id: int) -> PaymentMethod:
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
        method = payment_method_for(customer_id, payment_method_id)
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
    method = payment_method_for(customer_id, payment_method_id)
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
