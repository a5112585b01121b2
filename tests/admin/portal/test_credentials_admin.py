"""Back office: the REST API's credentials (issue 10). API keys are visible and revocable by support agents; service
tokens are superusers' only, created in the admin with the secret shown once. No page ever shows a secret's hash."""

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from portal.models import ApiKey, ServiceToken
from portal.services.api_keys import api_key_create, service_token_authenticate, service_token_create
from subscriptions.models import AuditEvent, Role
from tests.factories import CustomerFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def key_and_secret(db):
    customer = CustomerFactory(name="Acme")
    owner = MembershipFactory(customer=customer, user=UserFactory(email="owner@acme.test"), role=Role.OWNER).user
    return api_key_create(customer=customer, name="ERP sync", role="billing", actor=owner)


def _api(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def _no_secret_material(html: str, credential, secret: str | None = None) -> bool:
    return credential.key_hash not in html and (secret is None or secret not in html)


# --- API keys ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_fixture", ["support_client", "super_client"])
def test_support_and_superusers_see_api_keys_without_their_hash(request, client_fixture, key_and_secret):
    client = request.getfixturevalue(client_fixture)
    key, secret = key_and_secret

    listing = client.get(reverse("admin:portal_apikey_changelist"))
    page = client.get(reverse("admin:portal_apikey_change", args=[key.pk]))
    search = client.get(reverse("admin:portal_apikey_changelist"), {"q": key.key_hash})

    assert listing.status_code == page.status_code == 200
    assert key.prefix in listing.text and "ERP sync" in listing.text and "Acme" in listing.text
    assert _no_secret_material(listing.text, key, secret) and _no_secret_material(page.text, key, secret)
    assert 'name="name"' not in page.text  # read-only
    assert "0 API keys" in search.text or "0 results" in search.text  # the hash is no search handle


def test_billing_staff_have_no_access_to_api_keys(billing_client, key_and_secret):
    key, _ = key_and_secret

    assert billing_client.get(reverse("admin:portal_apikey_changelist")).status_code == 403
    assert billing_client.get(reverse("admin:portal_apikey_change", args=[key.pk])).status_code == 403


def test_support_revokes_a_leaked_api_key_it_stops_working_and_it_is_audited(
    support_client, support_user, key_and_secret
):
    key, secret = key_and_secret
    assert _api(secret).get("/api/v1/me/").status_code == 200

    response = support_client.post(
        reverse("admin:portal_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [key.pk]},
        follow=True,
    )

    assert "Revoked 1 key(s)" in response.text
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == support_user
    assert _api(secret).get("/api/v1/me/").status_code == 401
    event = AuditEvent.objects.get(action="api_key.revoked")
    assert (event.actor, event.customer, event.actor_kind) == (support_user, key.customer, "staff")


def test_api_keys_cannot_be_added_changed_or_deleted_in_admin(super_client, key_and_secret):
    key, _ = key_and_secret

    assert super_client.get(reverse("admin:portal_apikey_add")).status_code == 403
    assert super_client.post(reverse("admin:portal_apikey_change", args=[key.pk]), {"name": "x"}).status_code == 403
    assert super_client.get(reverse("admin:portal_apikey_delete", args=[key.pk])).status_code == 403


# --- Service tokens ---------------------------------------------------------------------------------------------------


def test_superuser_creates_a_service_token_and_sees_it_exactly_once(super_client, superuser):
    form = super_client.get(reverse("admin:portal_servicetoken_add"))
    assert form.status_code == 200 and 'name="scopes"' in form.text

    created = super_client.post(
        reverse("admin:portal_servicetoken_add"), {"name": "Product entitlement sync", "scopes": ["entitlements:read"]}
    )

    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    token = ServiceToken.objects.get()
    secret = created.context["plaintext"]
    assert secret.startswith(token.prefix + "_") and secret in created.text
    assert service_token_authenticate(secret=secret) == token
    assert (token.name, token.scopes, token.created_by) == (
        "Product entitlement sync",
        ["entitlements:read"],
        superuser,
    )
    assert AuditEvent.objects.filter(action="service_token.created", actor=superuser).count() == 1
    # never again: not on the list, not on its page, and only its hash is stored
    for url in (
        reverse("admin:portal_servicetoken_changelist"),
        reverse("admin:portal_servicetoken_change", args=[token.pk]),
    ):
        page = super_client.get(url)
        assert page.status_code == 200 and token.prefix in page.text
        assert _no_secret_material(page.text, token, secret)


def test_service_token_form_refuses_missing_name_or_scope(super_client):
    response = super_client.post(reverse("admin:portal_servicetoken_add"), {"name": "", "scopes": []})

    assert response.status_code == 200
    assert "This field is required." in response.text
    assert not ServiceToken.objects.exists()


@pytest.mark.parametrize("client_fixture", ["support_client", "billing_client"])
def test_staff_other_than_superusers_cannot_see_or_create_service_tokens(request, client_fixture):
    client = request.getfixturevalue(client_fixture)
    token, _ = service_token_create(name="sync", scopes=["entitlements:read"], actor=None)

    assert client.get(reverse("admin:portal_servicetoken_changelist")).status_code == 403
    assert client.get(reverse("admin:portal_servicetoken_change", args=[token.pk])).status_code == 403
    assert client.get(reverse("admin:portal_servicetoken_add")).status_code == 403
    crafted = client.post(reverse("admin:portal_servicetoken_add"), {"name": "mine", "scopes": ["entitlements:read"]})
    assert crafted.status_code == 403
    assert ServiceToken.objects.count() == 1


def test_superuser_revokes_a_service_token_and_it_is_audited(super_client, superuser):
    token, secret = service_token_create(name="sync", scopes=["entitlements:read"], actor=None)
    customer = CustomerFactory()
    assert _api(secret).get("/api/v1/entitlements/", {"customer": customer.pk}).status_code == 200

    super_client.post(
        reverse("admin:portal_servicetoken_changelist"), {"action": "revoke_selected", "_selected_action": [token.pk]}
    )

    token.refresh_from_db()
    assert token.revoked_at is not None
    assert _api(secret).get("/api/v1/entitlements/", {"customer": customer.pk}).status_code == 401
    assert AuditEvent.objects.filter(action="service_token.revoked", actor=superuser).count() == 1


def test_revoking_twice_changes_nothing_more(support_client, key_and_secret):
    key, _ = key_and_secret
    for _ in range(2):
        support_client.post(
            reverse("admin:portal_apikey_changelist"), {"action": "revoke_selected", "_selected_action": [key.pk]}
        )

    assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1
    assert ApiKey.objects.get().revoked_at is not None
