"""Structured logs (issue 17): JSON lines carrying request id, customer id and task id, and never a secret.

The logs are captured from the real configured handler (settings.LOGGING's console handler, with its filters and JSON
formatter) at DEBUG, over a representative full flow: portal sign-in with the demo password (wrong, then right), an
API token obtained and used, an API key created and used, a seat change whose provisioning task runs, a Stripe
webhook signed with the webhook secret (and a forged one), a stolen-looking bearer token, and a careless log call
that names secrets outright. Then the captured text is grepped for every one of those secrets.
"""

import io
import json
import logging

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from billing.models import StripeEvent
from portal.logging import JsonFormatter
from portal.models import ApiKeyRole
from portal.services.api_keys import api_key_create
from subscriptions.services.subscriptions import subscription_create
from tests.api.conftest import make_account
from tests.billing.stripe_support import WEBHOOK_SECRET, event_payload, signed_headers
from tests.factories import priced_package

DEMO_PASSWORD = "continuum-demo"
STRIPE_SECRET_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


@pytest.fixture
def captured_logs():
    """The console handler of settings.LOGGING, writing into a buffer, with everything at DEBUG."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter) and type(h) is logging.StreamHandler]
    assert handlers, "settings.LOGGING's JSON console handler is not installed"
    buffer = io.StringIO()
    previous = [(h, h.setStream(buffer)) for h in handlers]
    level = root.level
    root.setLevel(logging.DEBUG)
    yield buffer
    root.setLevel(level)
    for handler, stream in previous:
        handler.setStream(stream)


@pytest.mark.django_db(transaction=True)
def test_full_flow_logs_carry_ids_and_no_secret(captured_logs, settings, django_capture_on_commit_callbacks):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_SECRET_KEY = STRIPE_SECRET_KEY
    account = make_account("Acme")
    owner = account.owner
    owner.set_password(DEMO_PASSWORD)
    owner.save()
    subscription = subscription_create(
        customer=account.customer, package=priced_package(slug="team", name="Team"), interval="month", seats=10
    )
    customer_id = account.customer.pk

    # portal sign-in: a wrong password, then the demo one
    browser = APIClient()
    browser.post(reverse("portal:login"), {"username": owner.email, "password": "not-the-password-1"})
    browser.post(reverse("portal:login"), {"username": owner.email, "password": DEMO_PASSWORD})
    browser.get(f"/c/{customer_id}/")

    # API: a token from the password, used; an API key, used; a forged bearer token
    api = APIClient()
    api.post("/api/v1/auth/token/", {"email": owner.email, "password": "wrong-password-2"}, format="json")
    obtained = api.post("/api/v1/auth/token/", {"email": owner.email, "password": DEMO_PASSWORD}, format="json")
    assert obtained.status_code == 201, obtained.content
    token = obtained.json()["token"]
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    base = f"/api/v1/customers/{customer_id}/subscriptions/{subscription.pk}/"
    with django_capture_on_commit_callbacks(execute=True):
        preview = api.post(base + "seat-changes/preview/", {"seats": 12}, format="json").json()
        applied = api.post(base + "seat-changes/", {"seats": 12, "version": preview["version"]}, format="json")
    assert applied.status_code == 201, applied.content
    _, key = api_key_create(customer=account.customer, name="ci", role=ApiKeyRole.ADMIN, actor=owner)
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert keyed.get(f"/api/v1/customers/{customer_id}/invoices/").status_code == 200
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION=f"Bearer {key[:-4]}XXXX")
    assert forged.get("/api/v1/me/").status_code == 401

    # a Stripe webhook signed with the secret, and a forged one
    payload = event_payload(event_type="customer.updated", obj={"id": "cus_1", "object": "customer"})
    webhook = APIClient()
    assert (
        webhook.post(
            "/stripe/webhook/", payload, content_type="application/json", **signed_headers(payload)
        ).status_code
        == 200
    )
    forged_sig = signed_headers(payload, secret="whsec_attacker_guess_123456")
    assert webhook.post("/stripe/webhook/", payload, content_type="application/json", **forged_sig).status_code == 400
    assert StripeEvent.objects.count() == 1

    # a careless log call that names secrets outright
    logging.getLogger("portal.careless").warning(
        "calling Stripe with %s, signing with %s, token=%s, password=%s, url postgres://app:%s@db/continuum",
        STRIPE_SECRET_KEY,
        WEBHOOK_SECRET,
        token,
        DEMO_PASSWORD,
        DEMO_PASSWORD,
    )
    try:
        raise RuntimeError(f"upstream refused key {key}")
    except RuntimeError:
        logging.getLogger("portal.careless").exception("call failed")

    text = captured_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    # then: the capture is real — JSON lines with request ids, the customer id and a task id
    assert len(lines) >= 5, text[:2000]
    assert any(line.get("request_id", "-") != "-" for line in lines)
    assert any(line.get("customer_id") == customer_id for line in lines), text[-3000:]
    assert any(line.get("task_id") and line.get("task") == "subscriptions.entitlements_reconcile" for line in lines)
    # and not one secret in it
    for secret in (DEMO_PASSWORD, token, key, key[:-4], WEBHOOK_SECRET, STRIPE_SECRET_KEY, "whsec_attacker_guess"):
        assert secret not in text, f"{secret[:6]}… leaked into the logs"
    # the careless line was logged, masked
    assert any("careless" in line["logger"] and "[redacted]" in line["message"] for line in lines)
