"""Staff two-factor sign-in (django-otp TOTP), staff session limits and the staff sign-in audit (issue 17)."""

import io
import re
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from portal.services.staff_signin import LAST_SEEN_AT, SIGNED_IN_AT
from subscriptions.models import AuditEvent
from tests.factories import DEFAULT_PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

ADMIN_LOGIN = "/admin/login/?next=/admin/"
PRODUCTION_2FA = override_settings(STAFF_OTP_REQUIRED=True)


def _staff(email="ops@continuum.test", **extra):
    return UserFactory(email=email, is_staff=True, is_superuser=True, **extra)


def _enrol(user) -> TOTPDevice:
    out = io.StringIO()
    call_command("staff_otp_enrol", user.email, stdout=out)
    assert "otpauth://totp/" in out.getvalue()
    return TOTPDevice.objects.get(user=user)


def _code(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


def _admin_login(client, user, otp_token=None, password=DEFAULT_PASSWORD):
    data = {"username": user.email, "password": password}
    if otp_token is not None:
        data["otp_token"] = otp_token
    return client.post(ADMIN_LOGIN, data, REMOTE_ADDR="10.9.9.9")


@PRODUCTION_2FA
def test_admin_sign_in_with_password_alone_is_refused_when_two_factor_is_required(client):
    # given an enrolled staff member
    user = _staff()
    _enrol(user)
    # when they give the right password but no code
    response = _admin_login(client, user)
    # then they are not signed in, and the refusal is audited
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302
    failure = AuditEvent.objects.get(action="staff.sign_in_failed")
    assert failure.actor == user and failure.after["reason"] == "second_factor"


@PRODUCTION_2FA
def test_admin_sign_in_with_a_wrong_code_is_refused_and_audited(client):
    user = _staff()
    device = _enrol(user)
    wrong = f"{(int(_code(device)) + 1) % 1_000_000:06d}"
    response = _admin_login(client, user, otp_token=wrong)
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="staff.sign_in_failed", actor=user).count() == 1
    assert wrong not in str(AuditEvent.objects.get(action="staff.sign_in_failed").after)


@PRODUCTION_2FA
def test_admin_sign_in_with_password_and_code_opens_the_back_office_and_is_audited(client):
    user = _staff()
    device = _enrol(user)
    response = _admin_login(client, user, otp_token=_code(device))
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    signed_in = AuditEvent.objects.get(action="staff.signed_in")
    assert signed_in.actor == user
    assert signed_in.after["second_factor"] == "TOTPDevice" and signed_in.after["ip"] == "10.9.9.9"


@PRODUCTION_2FA
def test_staff_without_an_authenticator_cannot_sign_in_and_is_told_how_to_enrol(client):
    user = _staff()
    response = _admin_login(client, user, otp_token="123456")
    assert "_auth_user_id" not in client.session
    assert "staff_otp_enrol" in response.text
    assert AuditEvent.objects.get(action="staff.sign_in_failed").after["reason"] == "no_authenticator"


@PRODUCTION_2FA
def test_a_password_only_staff_session_from_the_portal_reaches_neither_admin_nor_portal_nor_api(client):
    # given a staff member signed in through the customer portal's password form
    user = _staff()
    _enrol(user)
    assert client.post("/login/", {"username": user.email, "password": DEFAULT_PASSWORD}).status_code == 302
    # then every door sends them to the two-factor sign-in
    admin = client.get("/admin/")
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")
    page = client.get("/")
    assert page.status_code == 302 and page["Location"].startswith("/admin/login/")
    api = client.get("/api/v1/me/")
    assert api.status_code == 403 and api.json()["error"]["code"] == "staff_two_factor_required"


@PRODUCTION_2FA
def test_the_token_endpoint_gives_staff_no_password_only_token(client):
    user = _staff()
    response = client.post(
        "/api/v1/auth/token/", {"email": user.email, "password": DEFAULT_PASSWORD}, content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "staff_two_factor_required"


@override_settings(STAFF_OTP_REQUIRED=False)
def test_under_make_run_staff_sign_in_with_a_password_alone_still_works(client):
    user = _staff()
    response = _admin_login(client, user)
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert AuditEvent.objects.get(action="staff.signed_in").after["second_factor"] is None


@override_settings(STAFF_OTP_REQUIRED=False)
def test_failed_staff_passwords_are_audited_but_customer_failures_are_not(client):
    user = _staff()
    customer_user = UserFactory(email="someone@customer.test")
    _admin_login(client, user, password="not-the-password")
    client.post("/login/", {"username": customer_user.email, "password": "nope-nope-nope"})
    failures = AuditEvent.objects.filter(action="staff.sign_in_failed")
    assert [event.actor for event in failures] == [user]
    assert "not-the-password" not in str(failures[0].after)


@override_settings(STAFF_OTP_REQUIRED=False, STAFF_SESSION_IDLE_SECONDS=1800, STAFF_SESSION_MAX_SECONDS=36000)
def test_an_idle_staff_session_expires_and_the_expiry_is_audited(client):
    user = _staff()
    _admin_login(client, user)
    assert client.get("/admin/").status_code == 200
    # when the session has seen no request for longer than the idle limit
    session = client.session
    session[LAST_SEEN_AT] = time.time() - 1801
    session.save()
    # then the next request is anonymous
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    assert AuditEvent.objects.get(action="staff.session_expired").after["reason"] == "idle"


@override_settings(STAFF_OTP_REQUIRED=False, STAFF_SESSION_IDLE_SECONDS=1800, STAFF_SESSION_MAX_SECONDS=36000)
def test_a_busy_staff_session_still_ends_at_its_maximum_age(client):
    user = _staff()
    _admin_login(client, user)
    session = client.session
    session[SIGNED_IN_AT] = time.time() - 36001
    session[LAST_SEEN_AT] = time.time() - 5
    session.save()
    assert client.get("/admin/").status_code == 302
    assert AuditEvent.objects.get(action="staff.session_expired").after["reason"] == "max_age"


def test_enrolment_refuses_customers_and_a_second_device_without_reset():
    customer_user = UserFactory(email="someone@customer.test")
    with pytest.raises(CommandError):
        call_command("staff_otp_enrol", customer_user.email, stdout=io.StringIO())
    user = _staff()
    first = _enrol(user)
    with pytest.raises(CommandError):
        call_command("staff_otp_enrol", user.email, stdout=io.StringIO())
    out = io.StringIO()
    call_command("staff_otp_enrol", user.email, "--reset", stdout=out)
    assert not TOTPDevice.objects.filter(pk=first.pk).exists()
    assert re.search(r"secret: [A-Z2-7]+", out.getvalue())
