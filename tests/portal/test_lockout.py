"""One sign-in lockout for every way in: the portal sign-in, POST /api/v1/auth/token/ and the Django admin login,
counted per account and per client (django-axes, portal/lockout.py); password reset throttled."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from portal.models import AccessToken
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "continuum-demo"
LOGIN = "/login/"
ADMIN_LOGIN = "/admin/login/"
TOKEN = "/api/v1/auth/token/"


def portal_login(client, email, password="wrong-password", ip="10.0.0.1"):
    return client.post(LOGIN, {"username": email, "password": password}, REMOTE_ADDR=ip)


def admin_login(client, email, password="wrong-password", ip="10.0.0.1"):
    return client.post(ADMIN_LOGIN, {"username": email, "password": password, "next": "/admin/"}, REMOTE_ADDR=ip)


def token(client, email, password="wrong-password", ip="10.0.0.1"):
    return client.post(TOKEN, {"email": email, "password": password}, content_type="application/json", REMOTE_ADDR=ip)


@pytest.fixture
def staff():
    return UserFactory(email="staff@continuum.test", is_staff=True, is_superuser=True)


def test_admin_login_is_locked_after_repeated_failures_even_with_the_right_password(staff):
    client = Client()
    for _ in range(25):
        admin_login(client, staff.email)

    right = admin_login(client, staff.email, password=PASSWORD)

    assert right.status_code == 429
    assert "Too many sign-in attempts" in right.text
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still signed out


def test_admin_failures_count_toward_the_portal_lockout_and_the_token_endpoint(staff):
    for _ in range(5):
        admin_login(Client(), staff.email, ip="10.0.0.7")

    portal = portal_login(Client(), staff.email, password=PASSWORD, ip="10.0.0.8")
    api = token(Client(), staff.email, password=PASSWORD, ip="10.0.0.9")

    assert portal.status_code == 429 and "Too many sign-in attempts" in portal.text
    assert api.status_code == 429 and api.json()["error"]["code"] == "locked_out"


def test_token_endpoint_refuses_an_account_locked_by_portal_failures():
    user = UserFactory(email="victim@example.test")
    for _ in range(5):
        portal_login(Client(), user.email)

    response = token(Client(), "Victim@Example.test", password=PASSWORD, ip="10.2.2.2")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "locked_out"
    assert "token" not in response.json()
    assert not AccessToken.objects.filter(user=user).exists()


def test_token_failures_count_toward_the_portal_lockout():
    user = UserFactory(email="scripted@example.test")
    for _ in range(5):
        assert token(Client(), user.email).status_code == 401

    assert portal_login(Client(), user.email, password=PASSWORD, ip="10.3.3.3").status_code == 429


@override_settings(LOGIN_THROTTLE_IP_LIMIT=6)
def test_a_client_spraying_many_accounts_is_locked_on_every_surface(staff):
    for n in range(6):
        portal_login(Client(), f"spray{n}@example.test", ip="10.9.9.9")
    victim = UserFactory(email="real@example.test")

    assert token(Client(), victim.email, password=PASSWORD, ip="10.9.9.9").status_code == 429
    assert admin_login(Client(), staff.email, password=PASSWORD, ip="10.9.9.9").status_code == 429
    # The accounts themselves are not locked: from another address the right password works.
    assert token(Client(), victim.email, password=PASSWORD, ip="10.1.1.1").status_code == 201


def test_lockout_ends_after_the_window_and_reads_the_same_for_unknown_addresses():
    user = UserFactory(email="known@example.test")
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for email in ("known@example.test", "nobody@example.test"):
            for _ in range(5):
                portal_login(Client(), email)
        known = token(Client(), "known@example.test", password=PASSWORD)
        unknown = token(Client(), "nobody@example.test", password=PASSWORD)
        assert known.status_code == unknown.status_code == 429
        assert known.json() == unknown.json()

        clock.shift(timedelta(minutes=16))

        assert portal_login(Client(), user.email, password=PASSWORD).status_code == 302


def test_password_reset_is_throttled_per_account_without_revealing_accounts():
    UserFactory(email="reset@example.test")
    client = Client()
    responses = [
        client.post(reverse("portal:password_reset"), {"email": "reset@example.test"}, REMOTE_ADDR=f"10.4.4.{n}")
        for n in range(15)
    ]
    ghost = [
        client.post(reverse("portal:password_reset"), {"email": "ghost@example.test"}, REMOTE_ADDR=f"10.5.5.{n}")
        for n in range(4)
    ]

    assert len(mail.outbox) == 3
    assert [r.status_code for r in responses] == [302] * 3 + [429] * 12
    assert [r.status_code for r in ghost] == [302] * 3 + [429]
    strip = lambda r: re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"|value="[^"]*@example.test"', "", r.text)  # noqa: E731
    assert strip(responses[-1]) == strip(ghost[-1])
    assert "Too many password reset requests" in responses[-1].text


def test_password_reset_is_throttled_per_client():
    client = Client()
    statuses = [
        client.post(reverse("portal:password_reset"), {"email": f"n{n}@example.test"}, REMOTE_ADDR="10.6.6.6")
        for n in range(11)
    ]

    assert [r.status_code for r in statuses] == [302] * 10 + [429]
