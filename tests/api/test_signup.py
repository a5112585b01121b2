"""POST /api/v1/signup/: a company, its owner and a subscription in one call."""

import base64

import pytest

from billing.models import BillingProfile, TaxExemption
from subscriptions.models import Customer, Membership, Subscription, User
from tests.api.conftest import assert_error, bearer
from tests.clock import in_years
from tests.factories import priced_package

EXPIRES = in_years(3)  # a certificate's last valid day, years from today (tests/clock.py)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    settings.PRIVATE_STORAGE_ROOT = tmp_path / "private"


@pytest.fixture
def team(db):
    return priced_package(slug="team", name="Team")


def payload(**overrides):
    body = {
        "company": "Initech",
        "country": "US",
        "region": "CA",
        "currency": "USD",
        "name": "Bill Lumbergh",
        "email": "bill@initech.test",
        "password": "tps-reports-2026!",
        "package": "team",
        "interval": "month",
        "seats": 6,
        "billing_address": {"line1": "1 Initech Way", "city": "Austin", "postal_code": "73301"},
    }
    body.update(overrides)
    return body


def test_signup_creates_owner_customer_subscription_and_token(client, team):
    response = client.post("/api/v1/signup/", payload(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    customer = Customer.objects.get(name="Initech")
    assert body["customer"]["id"] == customer.pk
    assert Membership.objects.get(customer=customer).user.email == "bill@initech.test"
    assert body["subscription"]["package"]["slug"] == "team" and body["subscription"]["seats"] == 6
    assert BillingProfile.objects.get(customer=customer).address_line1 == "1 Initech Way"
    me = bearer(body["token"]).get("/api/v1/me/").json()
    assert me["customers"] == [{"id": customer.pk, "name": "Initech", "role": "owner"}]
    assert "password" not in response.content.decode()


def test_signup_with_tax_exemption_declaration(client, team):
    pdf = base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
    exemption = {
        "jurisdiction": "US-CA",
        "certificate_number": "R-1",
        "expires_on": EXPIRES.isoformat(),
        "certificate": pdf,
    }
    response = client.post("/api/v1/signup/", payload(tax_exemption=exemption), format="json")
    assert response.status_code == 201, response.content
    assert TaxExemption.objects.get().certificate_number == "R-1"


def test_signup_existing_email_is_422_and_writes_nothing(client, team):
    User.objects.create_user("bill@initech.test", "whatever-123456")
    assert_error(client.post("/api/v1/signup/", payload(), format="json"), 422, "signup_invalid", "email")
    assert not Customer.objects.exists() and not Subscription.objects.exists()


@pytest.mark.parametrize(
    "overrides, status, code, field",
    [
        ({"package": "nope"}, 422, "signup_invalid", "package"),
        ({"password": "short"}, 422, "signup_invalid", "password"),
        ({"seats": 0}, 400, "min_value", "seats"),
        ({"plan": "team"}, 400, "unknown_field", "plan"),
        ({"billing_address": {"line1": "x", "city": "y"}}, 400, "required", "billing_address.postal_code"),
        ({"billing_address": {"line1": "x", "city": "y", "postal_code": "1", "zip": "2"}}, 400, "unknown_field", None),
    ],
)
def test_signup_bad_input(client, team, overrides, status, code, field):
    response = client.post("/api/v1/signup/", payload(**overrides), format="json")
    error = assert_error(response, status, code)
    if field is not None:
        assert error["field"] == field
    assert not Customer.objects.exists()


def test_signup_idempotency_key_creates_once(client, team):
    first = client.post("/api/v1/signup/", payload(), format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
    again = client.post("/api/v1/signup/", payload(), format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
    assert first.status_code == again.status_code == 201
    assert again.json()["customer"] == first.json()["customer"]
    assert Customer.objects.count() == 1
    other = client.post("/api/v1/signup/", payload(company="Other"), format="json", HTTP_IDEMPOTENCY_KEY="signup-1")
    assert_error(other, 422, "idempotency_key_reused")
