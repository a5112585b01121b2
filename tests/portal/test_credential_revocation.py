"""Access tokens and sessions end at once on a password reset or change (by any path) and on deactivation."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from portal.models import AccessToken
from portal.services.api_keys import access_token_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-brand-new-pass-42"


def _bearer(secret):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _is_signed_in(client) -> bool:
    response = client.get("/api/v1/me/")
    return response.status_code == 200


def _reset_password(user):
    anonymous = Client()
    anonymous.post(reverse("portal:password_reset"), {"email": user.email})
    link = re.search(r"http://testserver(/password-reset/\S+/)", mail.outbox[-1].body).group(1)
    form = anonymous.get(link, follow=True)
    done = anonymous.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302


def test_password_reset_ends_tokens_and_sessions_at_once():
    user = UserFactory(email="reset@example.test")
    _, secret = access_token_create(user=user)
    browser = _signed_in(user)
    assert _bearer(secret).get("/api/v1/me/").status_code == 200 and _is_signed_in(browser)

    _reset_password(user)

    assert _bearer(secret).get("/api/v1/me/").status_code == 401
    assert not _is_signed_in(browser)
    assert AccessToken.objects.get(user=user).revoked_at is not None


def test_password_change_by_any_path_ends_tokens(client):
    user = UserFactory(email="changed@example.test")
    _, secret = access_token_create(user=user)

    # e.g. staff in the admin, or a shell: no portal view involved
    user.set_password(NEW_PASSWORD)
    user.save()

    assert _bearer(secret).get("/api/v1/me/").status_code == 401
    _, fresh = access_token_create(user=user)
    assert _bearer(fresh).get("/api/v1/me/").status_code == 200


def test_admin_password_change_ends_tokens_and_sessions():
    staff = UserFactory(email="admin@continuum.test", is_staff=True, is_superuser=True)
    user = UserFactory(email="victim@example.test")
    _, secret = access_token_create(user=user)
    browser = _signed_in(user)
    admin = Client()
    admin.force_login(staff)

    response = admin.post(
        f"/admin/subscriptions/user/{user.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )

    assert response.status_code == 302, response.content[:500]
    assert _bearer(secret).get("/api/v1/me/").status_code == 401
    assert not _is_signed_in(browser)


def test_deactivation_ends_tokens_and_sessions_at_once():
    user = UserFactory(email="leaver@example.test")
    _, secret = access_token_create(user=user)
    browser = _signed_in(user)

    user.is_active = False
    user.save(update_fields=["is_active"])

    assert _bearer(secret).get("/api/v1/me/").status_code == 401
    assert not _is_signed_in(browser)


def test_token_endpoint_refuses_a_deactivated_user(client, password):
    user = UserFactory(email="gone@example.test", is_active=False)
    response = APIClient().post("/api/v1/auth/token/", {"email": user.email, "password": password}, format="json")
    assert response.status_code == 401
