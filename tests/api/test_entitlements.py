"""Entitlements: the customer's view and the product's view with a service token."""

import pytest

from portal.services.api_keys import service_token_create, service_token_revoke
from subscriptions.models import Entitlement
from tests.api.conftest import as_user, assert_error, bearer, caller

pytestmark = pytest.mark.django_db


@pytest.fixture
def grants(acme, globex):
    Entitlement.objects.create(
        customer=acme.customer, feature_key="sso", value_kind="boolean", desired_value=1, state="pending"
    )
    Entitlement.objects.create(
        customer=globex.customer, feature_key="sso", value_kind="boolean", desired_value=1, state="active"
    )


@pytest.mark.parametrize("who", ["owner", "member", "key:read_only"])
def test_customer_entitlements_with_state(acme, grants, who):
    [item] = caller(acme, who).get(f"/api/v1/customers/{acme.customer.pk}/entitlements/").json()["results"]
    assert (item["feature"], item["value"], item["state"]) == ("sso", 1, "pending")
    assert item["updated_at"].endswith("Z")


def test_service_token_reads_any_customer(acme, globex, grants):
    token, secret = service_token_create(name="product", scopes=["entitlements:read"], actor=None)
    client = bearer(secret)
    body = client.get(f"/api/v1/entitlements/?customer={globex.customer.pk}").json()
    assert [(e["feature"], e["state"]) for e in body["results"]] == [("sso", "active")]
    assert_error(client.get("/api/v1/entitlements/?customer=999999"), 404, "not_found")
    assert_error(client.get("/api/v1/entitlements/"), 400, "required", "customer")
    # a service token is not a customer credential
    assert_error(client.get(f"/api/v1/customers/{acme.customer.pk}/"), 404, "not_found")
    service_token_revoke(token=token, actor=None)
    assert_error(client.get(f"/api/v1/entitlements/?customer={globex.customer.pk}"), 401, "authentication_failed")


def test_service_entitlements_refuse_customer_credentials(acme, grants):
    assert_error(
        as_user(acme.owner).get(f"/api/v1/entitlements/?customer={acme.customer.pk}"), 403, "permission_denied"
    )
    assert_error(
        caller(acme, "key:admin").get(f"/api/v1/entitlements/?customer={acme.customer.pk}"), 403, "permission_denied"
    )


def test_entitlements_name_each_feature_in_customer_words_and_keep_the_feature_key(acme):
    from subscriptions.models import Package, Role
    from tests.factories import SkuFactory

    SkuFactory(code="LIC-API-10K", feature_key="api_calls_per_month", feature_label="API calls per month")
    SkuFactory(code="STOR-100", feature_key="storage_gb", feature_label="Storage (GB)")
    team = Package.objects.create(slug="team", name="Team")
    for key, value in (("api_calls_per_month", 10_000), ("storage_gb", 100), ("beta_reports", 1)):
        Entitlement.objects.create(
            customer=acme.customer, feature_key=key, value_kind="limit", desired_value=value, state="active"
        )
    Entitlement.objects.create(
        customer=acme.customer,
        feature_key="seat:team",
        user=acme.member,
        package=team,
        value_kind="user_seat",
        desired_value=1,
        state="active",
    )
    results = caller(acme, Role.OWNER).get(f"/api/v1/customers/{acme.customer.pk}/entitlements/").json()["results"]
    names = {item["feature"]: item["name"] for item in results}
    assert names == {
        "api_calls_per_month": "API calls per month",
        "storage_gb": "Storage (GB)",
        "beta_reports": "Beta reports",  # not labelled in the catalog yet (check_catalog reports it)
        "seat:team": "Seat on Team",
    }
