"""The only module that imports `stripe`.

A thin, typed wrapper: every call builds requests from settings (STRIPE_SECRET_KEY, STRIPE_API_BASE) through a
`stripe.StripeClient` object — never by mutating the global `stripe.api_key` — and returns small frozen dataclasses,
so no Stripe object leaks into services, views or tasks. Errors come back as `StripeCardError` (the customer's card
said no; carries Stripe's customer-facing message) or `StripeUnavailable` (anything else: network, auth, bad request).

Written against what real Stripe does (https://docs.stripe.com/api). Where the localstripe fake used by the tests
differs, the difference is absorbed by the tests' fixtures, not here — with one tolerance: Stripe returns expandable
fields (`latest_charge`, `customer`, `payment_method`) as ids unless expanded, localstripe sometimes inlines them, so
`_id()` accepts both shapes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings

# Stripe's own default; the webhook view passes it explicitly so the 5-minute replay window is visible in our code.
WEBHOOK_TOLERANCE_SECONDS = 300


class StripeClientError(Exception):
    """Base of the errors this module raises. `transient`: Stripe could not be reached, was rate limiting, or failed
    on its side (5xx) — the same request may well succeed later, so callers retry instead of giving up."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        payment_intent_id: str = "",
        charge_id: str = "",
        transient: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.payment_intent_id = payment_intent_id
        self.charge_id = charge_id
        self.transient = transient


class StripeCardError(StripeClientError):
    """The card was declined or needs the customer (e.g. authentication_required). `message` is customer-readable."""


class StripeUnavailable(StripeClientError):
    """Stripe could not be reached, refused our credentials, or rejected the request."""


class WebhookSignatureInvalid(StripeClientError):
    """The Stripe-Signature header is missing, forged, or older than the tolerance."""


@dataclass(frozen=True)
class Card:
    id: str
    customer_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class SetupIntent:
    id: str
    client_secret: str
    status: str
    customer_id: str
    payment_method_id: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PaymentIntent:
    id: str
    status: str
    amount_minor: int
    currency: str
    client_secret: str
    customer_id: str
    payment_method_id: str
    latest_charge_id: str
    failure_code: str
    failure_message: str
    created: int
    metadata: dict = field(default_factory=dict)

    @property
    def requires_customer_action(self) -> bool:
        return self.status == "requires_action"


@dataclass(frozen=True)
class Refund:
    id: str
    status: str
    amount_minor: int
    currency: str
    metadata: dict = field(default_factory=dict)


def is_configured() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


@lru_cache(maxsize=8)
def _client_for(api_key: str, api_base: str) -> stripe.StripeClient:
    base_addresses = {"api": api_base} if api_base else None
    # Retries are safe: every POST we send carries an idempotency key (explicit, or stripe-python's own on retry).
    return stripe.StripeClient(api_key, base_addresses=base_addresses, max_network_retries=2)


def _client() -> stripe.StripeClient:
    if not settings.STRIPE_SECRET_KEY:
        raise StripeUnavailable("Card payments are not configured (STRIPE_SECRET_KEY is empty).")
    return _client_for(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE.rstrip("/"))


def _id(value: Any) -> str:
    """An expandable field as an id, whether Stripe sent the id or the expanded object."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value.get("id", "") if hasattr(value, "get") else getattr(value, "id", ""))


def _options(idempotency_key: str | None) -> dict:
    return {"idempotency_key": idempotency_key} if idempotency_key else {}


def _translate(error: stripe.StripeError) -> StripeClientError:
    body = getattr(error, "json_body", None) or {}
    err = body.get("error", {}) if isinstance(body, dict) else {}
    payment_intent_id = _id(err.get("payment_intent"))
    charge_id = _id(err.get("charge"))
    code = getattr(error, "code", None) or err.get("code") or ""
    if isinstance(error, stripe.CardError):
        message = getattr(error, "user_message", None) or err.get("message") or "Your card was declined."
        return StripeCardError(message, code=code, payment_intent_id=payment_intent_id, charge_id=charge_id)
    message = err.get("message") or str(error) or "Stripe did not accept the request."
    transient = isinstance(error, stripe.APIConnectionError | stripe.RateLimitError) or (
        (getattr(error, "http_status", None) or 0) >= 500
    )
    return StripeUnavailable(
        message, code=code, payment_intent_id=payment_intent_id, charge_id=charge_id, transient=transient
    )


class _call:
    """Context manager turning stripe-python exceptions into ours."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, stripe.StripeError):
            raise _translate(exc) from exc
        return False


# --- Customers -------------------------------------------------------------------------------------------------------


def customer_create(
    *, name: str, email: str, address: dict[str, str] | None, metadata: dict[str, str], idempotency_key: str
) -> str:
    params: dict[str, Any] = {"name": name, "metadata": metadata}
    if email:
        params["email"] = email
    if address:
        params["address"] = address
    with _call():
        return _client().v1.customers.create(params=params, options=_options(idempotency_key)).id


def customer_update(
    *,
    customer_id: str,
    name: str | None = None,
    email: str | None = None,
    address: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
    default_payment_method_id: str | None = None,
) -> None:
    params: dict[str, Any] = {}
    if name is not None:
        params["name"] = name
    if email is not None:
        params["email"] = email
    if address:
        params["address"] = address
    if metadata:
        params["metadata"] = metadata
    if default_payment_method_id is not None:
        # "" clears the default, as Stripe documents.
        params["invoice_settings"] = {"default_payment_method": default_payment_method_id}
    if not params:
        return
    with _call():
        _client().v1.customers.update(customer_id, params=params)


# --- Setup intents and payment methods ------------------------------------------------------------------------------


def _data(obj: Any) -> dict:
    """StripeObject is not a dict (no .get); work on its plain data."""
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _setup_intent(obj: Any) -> SetupIntent:
    obj = _data(obj)
    return SetupIntent(
        id=obj["id"],
        client_secret=obj.get("client_secret") or "",
        status=obj["status"],
        customer_id=_id(obj.get("customer")),
        payment_method_id=_id(obj.get("payment_method")),
        metadata=dict(obj.get("metadata") or {}),
    )


def setup_intent_create(*, customer_id: str, metadata: dict[str, str]) -> SetupIntent:
    """A SetupIntent for saving a card for later off-session charges (usage=off_session)."""
    with _call():
        obj = _client().v1.setup_intents.create(
            params={
                "customer": customer_id,
                "usage": "off_session",
                "payment_method_types": ["card"],
                "metadata": metadata,
            }
        )
    return _setup_intent(obj)


def setup_intent_retrieve(*, setup_intent_id: str) -> SetupIntent:
    with _call():
        return _setup_intent(_client().v1.setup_intents.retrieve(setup_intent_id))


def _card(obj: Any) -> Card:
    obj = _data(obj)
    card = obj.get("card") or {}
    return Card(
        id=obj["id"],
        customer_id=_id(obj.get("customer")),
        brand=str(card.get("brand") or "card"),
        last4=str(card.get("last4") or ""),
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
    )


def payment_method_retrieve(*, payment_method_id: str) -> Card:
    with _call():
        return _card(_client().v1.payment_methods.retrieve(payment_method_id))


def payment_method_detach(*, payment_method_id: str) -> None:
    with _call():
        _client().v1.payment_methods.detach(payment_method_id)


# --- Payment intents and refunds ------------------------------------------------------------------------------------


def _payment_intent(obj: Any) -> PaymentIntent:
    obj = _data(obj)
    error = obj.get("last_payment_error") or {}
    return PaymentIntent(
        id=obj["id"],
        status=obj["status"],
        amount_minor=int(obj["amount"]),
        currency=str(obj["currency"]).upper(),
        client_secret=obj.get("client_secret") or "",
        customer_id=_id(obj.get("customer")),
        payment_method_id=_id(obj.get("payment_method")),
        latest_charge_id=_id(obj.get("latest_charge")),
        failure_code=str(error.get("code") or ""),
        failure_message=str(error.get("message") or ""),
        created=int(obj.get("created") or 0),
        metadata=dict(obj.get("metadata") or {}),
    )


def payment_intent_create_and_confirm(
    *,
    amount_minor: int,
    currency: str,
    customer_id: str,
    payment_method_id: str,
    off_session: bool,
    metadata: dict[str, str],
    idempotency_key: str,
) -> PaymentIntent:
    """Create and confirm a PaymentIntent charging a saved card.

    `off_session=True` is for charges without the customer present (automatic collection): Stripe then fails with
    `authentication_required` instead of asking for 3-D Secure. On-session (pay-now) it may return requires_action,
    which the page completes with Stripe.js. The idempotency key makes a retried request return the first result.
    """
    params: dict[str, Any] = {
        "amount": amount_minor,
        "currency": currency.lower(),
        "customer": customer_id,
        "payment_method": payment_method_id,
        "confirm": True,
        "metadata": metadata,
    }
    if off_session:
        params["off_session"] = True
    with _call():
        obj = _client().v1.payment_intents.create(params=params, options=_options(idempotency_key))
    return _payment_intent(obj)


def payment_intent_retrieve(*, payment_intent_id: str) -> PaymentIntent:
    with _call():
        return _payment_intent(_client().v1.payment_intents.retrieve(payment_intent_id))


def refund_create(
    *, payment_intent_id: str, amount_minor: int, metadata: dict[str, str], idempotency_key: str
) -> Refund:
    with _call():
        obj = _client().v1.refunds.create(
            params={"payment_intent": payment_intent_id, "amount": amount_minor, "metadata": metadata},
            options=_options(idempotency_key),
        )
    return _refund(obj)


def _refund(obj: Any) -> Refund:
    obj = _data(obj)
    return Refund(
        id=obj["id"],
        status=str(obj.get("status") or ""),
        amount_minor=int(obj.get("amount") or 0),
        currency=str(obj.get("currency") or "").upper(),
        metadata=dict(obj.get("metadata") or {}),
    )


def refund_list_for_charge(*, charge_id: str) -> list[Refund]:
    """Every refund Stripe holds for `charge_id` (all pages), oldest first: the truth a `charge.refunded` event only
    hints at (events can repeat and arrive out of order; their amounts are a snapshot)."""
    refunds: list[Refund] = []
    with _call():
        page = _client().v1.refunds.list(params={"charge": charge_id, "limit": 100})
        for obj in page.auto_paging_iter():
            refunds.append(_refund(obj))
    return refunds[::-1]  # Stripe lists newest first


# --- Webhooks -------------------------------------------------------------------------------------------------------


def webhook_event_verify(*, payload: bytes, signature_header: str, secret: str) -> dict:
    """Verify `Stripe-Signature` (HMAC-SHA256 over "<t>.<payload>", timestamp within 5 minutes either way) and return
    the event as plain JSON data. Raises WebhookSignatureInvalid; never returns unverified data.

    stripe-python only refuses timestamps older than the tolerance; a signed timestamp in the future would then stay
    replayable until that moment plus the tolerance, so the future side is checked here too."""
    if not secret:
        raise WebhookSignatureInvalid("No webhook secret is configured.")
    try:
        event = stripe.Webhook.construct_event(payload, signature_header, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as error:
        raise WebhookSignatureInvalid(str(error)) from error
    except ValueError as error:  # not JSON
        raise WebhookSignatureInvalid(f"Payload is not JSON: {error}") from error
    signed_at = _signature_timestamp(signature_header)
    if signed_at is None or signed_at > time.time() + WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookSignatureInvalid("Timestamp is in the future, outside the tolerance zone.")
    return _data(event)


def _signature_timestamp(header: str) -> int | None:
    """The `t=` of a Stripe-Signature header (already verified by stripe-python, so it is present and numeric)."""
    for item in (header or "").split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            return int(value)
    return None
