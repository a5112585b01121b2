"""Sign-in throttling, password reset and sign-out."""

import re

import pytest
from django.core import mail
from django.test import override_settings
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LOGIN = "/login/"


def _attempt(client, email, password="wrong-password", ip="10.0.0.1"):
    return client.post(LOGIN, {"username": email, "password": password}, REMOTE_ADDR=ip)


@override_settings(LOGIN_THROTTLE_ACCOUNT_LIMIT=3, LOGIN_THROTTLE_IP_LIMIT=100)
def test_login_throttles_an_account_after_repeated_failures_even_with_the_right_password(client):
    user = UserFactory(email="victim@example.test")
    for _ in range(3):
        assert _attempt(client, user.email).status_code == 200
    blocked = _attempt(client, user.email, password="continuum-demo")
    assert blocked.status_code == 429
    assert "Too many sign-in attempts" in blocked.text
    assert "_auth_user_id" not in client.session
    # Another account from the same address is unaffected.
    other = UserFactory(email="other@example.test")
    assert _attempt(client, other.email, password="continuum-demo").status_code == 302


@override_settings(LOGIN_THROTTLE_ACCOUNT_LIMIT=3, LOGIN_THROTTLE_IP_LIMIT=100)
def test_login_throttle_reads_the_same_for_unknown_and_known_addresses(client):
    UserFactory(email="known@example.test")
    for email in ("known@example.test", "nobody@example.test"):
        for _ in range(3):
            _attempt(client, email)
    known = _attempt(client, "known@example.test")
    unknown = _attempt(client, "nobody@example.test")
    assert known.status_code == unknown.status_code == 429
    strip = lambda r: re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"|value="[^"]*@example.test"', "", r.text)  # noqa: E731
    assert strip(known) == strip(unknown)


@override_settings(LOGIN_THROTTLE_ACCOUNT_LIMIT=100, LOGIN_THROTTLE_IP_LIMIT=4)
def test_login_throttles_an_ip_spraying_many_accounts(client):
    for n in range(4):
        _attempt(client, f"spray{n}@example.test", ip="10.9.9.9")
    user = UserFactory(email="real@example.test")
    assert _attempt(client, user.email, password="continuum-demo", ip="10.9.9.9").status_code == 429
    assert _attempt(client, user.email, password="continuum-demo", ip="10.1.1.1").status_code == 302


@override_settings(LOGIN_THROTTLE_ACCOUNT_LIMIT=3)
def test_login_success_resets_the_account_counter(client):
    user = UserFactory(email="forgetful@example.test")
    _attempt(client, user.email)
    _attempt(client, user.email)
    assert _attempt(client, user.email, password="continuum-demo").status_code == 302
    client.logout()
    _attempt(client, user.email)
    _attempt(client, user.email)
    assert _attempt(client, user.email, password="continuum-demo").status_code == 302


def test_password_reset_sends_a_link_that_sets_a_new_password(client):
    user = UserFactory(email="reset@example.test")
    response = client.post(reverse("portal:password_reset"), {"email": "Reset@Example.test"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    assert "Choose a new password" in form.text
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "a-brand-new-pass", "new_password2": "a-brand-new-pass"}
    )
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-brand-new-pass")


def test_password_reset_does_not_reveal_whether_an_address_has_an_account(client):
    response = client.post(reverse("portal:password_reset"), {"email": "ghost@example.test"}, follow=True)
    assert "If that address belongs to an account" in response.text
    assert mail.outbox == []


def test_logout_signs_out(client):
    user = UserFactory()
    client.force_login(user)
    client.post(reverse("portal:logout"))
    assert client.get(reverse("portal:dashboard"))["Location"].startswith(reverse("portal:login"))
