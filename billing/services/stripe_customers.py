"""Stripe customers: which payment backend is on, and the customer's Stripe customer (created on first use, kept in
sync with the billing profile). The lowest layer of billing's payment code: billing profiles call it, and
billing.services.payments re-exports it.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_client
from billing.exceptions import PaymentProviderUnavailable
from billing.models import BillingProfile, StripeCustomer
from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models import Customer
from subscriptions.services.audit import audit_record

BACKEND_MANUAL = "manual"
BACKEND_STRIPE = "stripe"


def payment_backend() -> str:
    """`stripe` when a Stripe secret key is configured, otherwise `manual` (bank transfer)."""
    return BACKEND_STRIPE if stripe_client.is_configured() else BACKEND_MANUAL


def _customer_details(customer: Customer) -> dict:
    profile = BillingProfile.objects.filter(customer=customer).first()
    name = (profile.legal_name if profile else "") or customer.legal_name or customer.name
    email = profile.billing_emails[0] if profile and profile.billing_emails else ""
    address = None
    if profile and profile.address_line1 and profile.country:
        address = {
            "line1": profile.address_line1,
            "line2": profile.address_line2,
            "city": profile.city,
            "state": profile.region,
            "postal_code": profile.postal_code,
            "country": profile.country,
        }
        address = {key: value for key, value in address.items() if value}
    return {"name": name, "email": email, "address": address}


def stripe_customer_ensure(*, customer_id: int) -> StripeCustomer:
    """The customer's Stripe customer, created on first use (metadata carries our id).

    Safe to call concurrently: the Stripe request carries an idempotency key derived from our id, and the link row
    is unique per customer, so the loser of a race reuses the winner's link.
    """
    link = StripeCustomer.objects.filter(customer_id=customer_id).first()
    if link is not None:
        return link
    customer = Customer.objects.get(pk=customer_id)
    details = _customer_details(customer)
    try:
        stripe_id = stripe_client.customer_create(
            name=details["name"],
            email=details["email"],
            address=details["address"],
            metadata={"continuum_customer_id": str(customer.pk)},
            idempotency_key=f"continuum-customer-{customer.pk}",
        )
    except stripe_client.StripeClientError as error:
        raise PaymentProviderUnavailable(f"Card payments are unavailable right now: {error.message}")
    try:
        with transaction.atomic():
            link = StripeCustomer.objects.create(
                customer=customer, stripe_customer_id=stripe_id, synced_at=timezone.now()
            )
            audit_record(
                customer=customer,
                action="payment.stripe_customer_created",
                obj=link,
                summary="Card payments set up with Stripe",
                after={"stripe_customer_id": stripe_id},
            )
    except IntegrityError:
        link = StripeCustomer.objects.get(customer_id=customer_id)
    return link


def stripe_customer_sync(*, customer_id: int) -> bool:
    """Push the billing profile (legal name, first billing e-mail, address) to the customer's Stripe customer.

    Call it after any billing-profile change (or queue `stripe_customer_sync_enqueue`). No-op (False) when the
    customer has no Stripe customer yet or Stripe is not the backend; a customer is only created when a card is added.
    """
    if payment_backend() != BACKEND_STRIPE:
        return False
    link = StripeCustomer.objects.select_related("customer").filter(customer_id=customer_id).first()
    if link is None:
        return False
    # The details are read now: a profile saved after this moment is newer than `synced_at`, so the sweep
    # (billing/services/handoff_sweep.py) still pushes it if that save's own sync is lost.
    read_at = timezone.now()
    details = _customer_details(link.customer)
    try:
        stripe_client.customer_update(
            customer_id=link.stripe_customer_id,
            name=details["name"],
            email=details["email"],
            address=details["address"],
            metadata={"continuum_customer_id": str(customer_id)},
        )
    except stripe_client.StripeClientError as error:
        raise PaymentProviderUnavailable(f"Could not update the customer at Stripe: {error.message}")
    StripeCustomer.objects.filter(pk=link.pk).update(synced_at=read_at)
    return True


def stripe_customer_sync_enqueue(*, customer_id: int) -> None:
    """Queue `stripe_customer_sync` after the current transaction commits (for billing-profile services)."""
    if payment_backend() != BACKEND_STRIPE:
        return
    enqueue_on_commit("billing.stripe_customer_sync", customer_id=customer_id)
