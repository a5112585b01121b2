"""Test support for the Stripe work: the localstripe server on 127.0.0.1 (started once per session by the
`localstripe_server` fixture of tests/support/plugin.py) and helpers that act like Stripe.js.

Everything localstripe does differently from real Stripe is handled HERE, never in product code:
- it does not attach the payment method to the customer when a SetupIntent succeeds (real Stripe does), so
  `confirm_card_setup` attaches it the way Stripe would;
- it refuses declining cards (4000000000000002) already when they are attached; cards that attach but are declined
  when charged are 4000000000000341;
- it ignores idempotency keys, which is why our own unique (invoice, attempt) constraint carries the guarantee.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.clock import today

SECRET_KEY = "sk_test_continuum_localstripe"
PUBLISHABLE_KEY = "pk_test_continuum_localstripe"
WEBHOOK_SECRET = "whsec_continuum_test_secret"

CARD_OK = "4242424242424242"
CARD_DECLINED_ON_CHARGE = "4000000000000341"
CARD_DECLINED_ON_ATTACH = "4000000000000002"
CARD_REQUIRES_AUTHENTICATION = "4000002760003184"
CARD_EXP_YEAR = today().year + 8  # a card that has not expired, whatever today is (tests/clock.py)


@dataclass
class LocalStripe:
    url: str

    def post(self, path: str, data: dict | None = None, method: str = "POST") -> dict:
        body = json.dumps(data or {}).encode()
        request = urllib.request.Request(
            self.url + path,
            data=body if method != "DELETE" else None,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {SECRET_KEY}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
            raw = response.read()
        return json.loads(raw) if raw.strip() else {}

    def get(self, path: str) -> dict:
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {SECRET_KEY}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1 only
            return json.loads(response.read())

    def reset(self) -> None:
        self.post("/_config/data", method="DELETE")

    def register_webhook(self, *, url: str, secret: str = WEBHOOK_SECRET, events: list[str] | None = None) -> None:
        data: dict = {"url": url, "secret": secret}
        if events is not None:
            data["events"] = events
        self.post("/_config/webhooks/continuum", data)


@pytest.fixture(scope="session")
def stripe_server_session(localstripe_server: str) -> LocalStripe:
    """infra's localstripe (tests/support/plugin.py: 127.0.0.1, free port, no pickle), with our helpers."""
    return LocalStripe(url=localstripe_server)


@pytest.fixture
def stripe_server(stripe_server_session: LocalStripe, settings) -> Iterator[LocalStripe]:
    """A localstripe with empty state, and settings pointing the stripe backend at it."""
    server = stripe_server_session
    server.reset()
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_JS_URL = server.url + "/js.stripe.com/v3/"
    yield server
    # localstripe cannot forget a webhook endpoint and live_server outlives the test: subscribe it to no event, so
    # later tests never receive deliveries meant for this one.
    server.register_webhook(url="http://127.0.0.1:9/", events=[])


def confirm_card_setup(server: LocalStripe, *, client_secret: str, number: str, authenticate: bool = True) -> dict:
    """Do what Stripe.js `confirmCardSetup` does in the browser with the publishable key, then (as real Stripe does
    when a SetupIntent with a customer succeeds) attach the new payment method to that customer."""
    setup_intent_id = client_secret.split("_secret_")[0]
    card = {"number": number, "exp_month": 12, "exp_year": CARD_EXP_YEAR, "cvc": "123"}
    payload = {
        "key": PUBLISHABLE_KEY,
        "client_secret": client_secret,
        "use_stripe_sdk": True,
        "payment_method_data": {"type": "card", "card": card},
    }
    request = urllib.request.Request(
        f"{server.url}/v1/setup_intents/{setup_intent_id}/confirm",
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            setup_intent = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return {"error": json.loads(error.read()).get("error", {})}
    if setup_intent["status"] == "requires_action" and authenticate:
        setup_intent = server.post(
            f"/v1/setup_intents/{setup_intent_id}/confirm", {"key": PUBLISHABLE_KEY, "client_secret": client_secret}
        )
    if setup_intent["status"] == "succeeded" and setup_intent.get("customer"):
        server.post(
            f"/v1/payment_methods/{setup_intent['payment_method']}/attach", {"customer": setup_intent["customer"]}
        )
    return setup_intent


def authenticate_payment(server: LocalStripe, *, client_secret: str, success: bool = True) -> dict:
    """What Stripe.js `confirmCardPayment` does for a PaymentIntent that requires 3-D Secure."""
    payment_intent_id = client_secret.split("_secret_")[0]
    return server.post(
        f"/v1/payment_intents/{payment_intent_id}/_authenticate?success={'true' if success else 'false'}",
        {"key": PUBLISHABLE_KEY, "client_secret": client_secret},
    )


# --- Data helpers (ORM only: these tests exercise payments, not invoice issuing) ------------------------------------

_counter = {"n": 0}


def open_invoice(*, customer, amount_minor: int = 12_300, currency: str = "USD", subscription=None):
    """An issued, open invoice as billing's issue service leaves it."""
    from django.utils import timezone

    from billing.models import Invoice, InvoiceStatus

    _counter["n"] += 1
    now = timezone.now()
    return Invoice.objects.create(
        customer=customer,
        subscription=subscription,
        number=f"INV-TEST-{_counter['n']:06d}-{customer.pk}",
        series="INV-TEST",
        status=InvoiceStatus.OPEN,
        currency=currency,
        subtotal_minor=amount_minor,
        total_minor=amount_minor,
        amount_due_minor=amount_minor,
        issued_at=now,
        due_on=now.date(),
        billing_legal_name=customer.legal_name,
    )


def credit_note_for(*, invoice, amount_minor: int, reason_code: str = "wrong_seat_count", refund_due_minor=None):
    """A credit note as billing's service leaves it on a paid invoice: all of it is due back unless told otherwise."""
    from django.utils import timezone

    from billing.models import CreditNote

    _counter["n"] += 1
    return CreditNote.objects.create(
        invoice=invoice,
        customer=invoice.customer,
        number=f"CN-TEST-{_counter['n']:06d}",
        series="CN-TEST",
        currency=invoice.currency,
        reason_code=reason_code,
        subtotal_minor=amount_minor,
        tax_minor=0,
        total_minor=amount_minor,
        refund_due_minor=amount_minor if refund_due_minor is None else refund_due_minor,
        issued_at=timezone.now(),
    )


def save_card(server: LocalStripe, *, customer, number: str = CARD_OK, actor=None):
    """The whole card form: start a SetupIntent, let 'Stripe.js' confirm it, record the card."""
    from billing.services import payments

    setup = payments.payment_method_setup_start(customer_id=customer.pk, actor=actor)
    result = confirm_card_setup(server, client_secret=setup.client_secret, number=number)
    assert result.get("status") == "succeeded", result
    return payments.payment_method_save_from_setup_intent(
        setup_intent_id=setup.setup_intent_id, customer_id=customer.pk, actor=actor
    )


def signed_headers(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> dict:
    """The Stripe-Signature header Stripe would send for `payload` (v1 = HMAC-SHA256 of "<t>.<payload>")."""
    import hashlib
    import hmac

    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return {"HTTP_STRIPE_SIGNATURE": f"t={timestamp},v1={signature}"}


def event_payload(*, event_type: str, obj: dict, event_id: str | None = None, created: int | None = None) -> bytes:
    import uuid

    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "api_version": "2024-06-20",
        "data": {"object": obj},
    }
    return json.dumps(event).encode()
