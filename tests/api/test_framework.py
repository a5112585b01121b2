"""Authentication, the error format, throttling, pagination and unknown-field rejection."""

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import AccessToken, ApiKey
from portal.services.api_keys import api_key_create, api_key_revoke, secret_hash
from tests.api.conftest import as_user, assert_error, bearer

pytestmark = pytest.mark.django_db


def test_api_key_create_stores_only_a_hash_and_shows_a_prefix(acme):
    key, secret = api_key_create(customer=acme.customer, name="CI", role="billing", actor=acme.owner)
    assert secret.startswith(key.prefix + "_")
    assert key.prefix.startswith("ck_")
    stored = ApiKey.objects.get(pk=key.pk)
    assert stored.key_hash == secret_hash(secret)
    assert secret not in {stored.key_hash, stored.prefix, stored.name}
    assert len(secret) > 40


def test_api_key_create_refused_for_non_owner(acme):
    with pytest.raises(Exception) as excinfo:
        api_key_create(customer=acme.customer, name="x", role="admin", actor=acme.billing_admin)
    assert "owner" in str(excinfo.value)


def test_api_key_create_rejects_unknown_role(acme):
    with pytest.raises(Exception) as excinfo:
        api_key_create(customer=acme.customer, name="x", role="superuser", actor=acme.owner)
    assert excinfo.value.field == "role"


def test_api_key_authenticates_and_records_last_use(acme):
    key, secret = api_key_create(customer=acme.customer, name="CI", role="read_only", actor=acme.owner)
    assert key.last_used_at is None
    response = bearer(secret).get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["customers"] == [{"id": acme.customer.pk, "name": "Acme", "role": "read_only"}]
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_api_key_revoke_stops_it_immediately(acme):
    key, secret = api_key_create(customer=acme.customer, name="CI", role="admin", actor=acme.owner)
    assert bearer(secret).get("/api/v1/me/").status_code == 200
    api_key_revoke(api_key=key, actor=acme.owner)
    assert_error(bearer(secret).get("/api/v1/me/"), 401, "authentication_failed")


def test_bearer_with_garbage_is_401_with_error_body(db):
    response = bearer("ck_nope_nope").get("/api/v1/me/")
    error = assert_error(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "revoked" in error["message"]


def test_no_credentials_is_401_with_error_body(client, db):
    assert_error(client.get("/api/v1/me/"), 401, "not_authenticated")


def test_auth_token_create_returns_short_lived_token(client, acme, password):
    response = client.post("/api/v1/auth/token/", {"email": "OWNER@acme.test", "password": password}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    assert body["expires_at"].endswith("Z")
    token = AccessToken.objects.get(user=acme.owner)
    assert timedelta(minutes=5) < token.expires_at - timezone.now() <= timedelta(hours=1)
    me = bearer(body["token"]).get("/api/v1/me/").json()
    assert me["user"]["email"] == "owner@acme.test"


def test_auth_token_create_wrong_password_is_401(client, acme):
    response = client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": "wrong"}, format="json")
    assert_error(response, 401, "invalid_credentials")
    assert not AccessToken.objects.exists()


def test_auth_token_create_is_throttled(client, acme, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth_token": "3/minute"}}
    for _ in range(3):
        client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": "wrong"}, format="json")
    response = client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": "wrong"}, format="json")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0


def test_expired_access_token_is_rejected(acme):
    client = as_user(acme.owner)
    AccessToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(client.get("/api/v1/me/"), 401, "authentication_failed")


def test_api_is_throttled_per_key(acme, globex, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": "2/minute"}}
    _, first = api_key_create(customer=acme.customer, name="a", role="admin", actor=acme.owner)
    _, second = api_key_create(customer=acme.customer, name="b", role="admin", actor=acme.owner)
    assert bearer(first).get("/api/v1/me/").status_code == 200
    assert bearer(first).get("/api/v1/me/").status_code == 200
    assert_error(bearer(first).get("/api/v1/me/"), 429, "throttled")
    assert bearer(second).get("/api/v1/me/").status_code == 200  # its own bucket


def test_unknown_field_is_rejected_with_field_named(client, acme, password):
    response = client.post(
        "/api/v1/auth/token/", {"email": "owner@acme.test", "password": password, "remember": True}, format="json"
    )
    assert_error(response, 400, "unknown_field", "remember")


def test_validation_error_names_field(client, db):
    response = client.post("/api/v1/auth/token/", {"email": "not-an-email", "password": "x"}, format="json")
    assert_error(response, 400, "invalid", "email")


def test_malformed_json_is_400_not_500(client, db):
    response = client.post("/api/v1/auth/token/", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_non_object_json_is_400(client, db):
    response = client.post("/api/v1/auth/token/", [1, 2], format="json")
    assert_error(response, 400, "invalid", None)


def test_unsupported_media_type_is_415(client, db):
    response = client.post("/api/v1/auth/token/", "email=a", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")


def test_unknown_api_path_is_json_404(client, db):
    assert_error(client.get("/api/v1/nothing-here/"), 404, "not_found")
    assert_error(client.get("/api/v1/customers/abc/"), 404, "not_found")


def test_unknown_api_path_is_json_404_for_unsafe_methods_with_a_session_cookie(acme):
    # e.g. a negative id, which no route accepts (found by schemathesis: Django's HTML CSRF page answered instead)
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(acme.owner)
    for method in ("delete", "post", "patch"):
        response = getattr(client, method)(f"/api/v1/customers/{acme.customer.pk}/subscriptions/1/seat-assignments/-1/")
        assert_error(response, 404, "not_found")


def test_method_not_allowed_has_error_body(acme):
    response = as_user(acme.owner).delete("/api/v1/me/")
    assert_error(response, 405, "method_not_allowed")


def test_session_auth_enforces_csrf(acme, password):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(acme.owner)
    assert client.get("/api/v1/me/").status_code == 200
    # An unsafe request with the session cookie but no CSRF token is refused.
    response = client.post(f"/api/v1/customers/{acme.customer.pk}/subscriptions/", {}, format="json")
    assert response.status_code in (403, 405)
    assert "error" in response.json()


def test_huge_ids_are_404_not_500(acme):
    client = as_user(acme.owner)
    assert_error(client.get("/api/v1/customers/99999999999999999999999999/"), 404, "not_found")
    assert_error(
        client.get(f"/api/v1/customers/{acme.customer.pk}/subscriptions/99999999999999999999999/"), 404, "not_found"
    )
