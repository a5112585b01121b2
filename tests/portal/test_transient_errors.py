"""Errors in the default profile (issue 17): the API answers every error in its own JSON, transient failures in
background work are retried, and a normal page load makes no failed request (/favicon.ico)."""

import json

import pytest
from django.db import OperationalError
from django.test import RequestFactory

from billing.models import StripeEvent, StripeEventStatus
from billing.services import stripe_events
from billing.tasks import stripe_event_process_task, tax_exemptions_daily_task
from portal.api.views.accounts import MeApi
from portal.celery import app
from portal.views import errors
from subscriptions.transient import backoff_seconds, is_transient
from tests.api.conftest import as_user, make_account

pytestmark = pytest.mark.django_db


def _fail(exc):
    def view(self, request, *args, **kwargs):
        raise exc

    return view


@pytest.mark.parametrize("debug", [False, True])
def test_api_unexpected_error_is_json_500_with_the_request_id(monkeypatch, settings, debug):
    settings.DEBUG = debug
    client = as_user(make_account("Acme").owner)
    client.raise_request_exception = False
    monkeypatch.setattr(MeApi, "get", _fail(RuntimeError("boom: secret internals")))

    response = client.get("/api/v1/me/", HTTP_X_REQUEST_ID="req-500-test")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "server_error" and error["request_id"] == "req-500-test" == response["X-Request-ID"]
    assert "secret internals" not in response.content.decode()  # never the exception text or a traceback


def test_api_database_locked_is_503_with_retry_after(monkeypatch):
    client = as_user(make_account("Acme").owner)
    monkeypatch.setattr(MeApi, "get", _fail(OperationalError("database is locked")))

    response = client.get("/api/v1/me/")

    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "temporarily_unavailable"


def test_server_error_handler_answers_json_under_api_and_html_elsewhere():
    factory = RequestFactory()
    api = errors.server_error(factory.get("/api/v1/anything/"))
    assert api.status_code == 500 and api["Content-Type"] == "application/json"
    body = json.loads(api.content)["error"]
    assert body["code"] == "server_error" and "request_id" in body
    page = errors.server_error(factory.get("/dashboard/"))
    assert page.status_code == 500 and b"Something went wrong" in page.content


def test_favicon_is_served_and_linked(client):
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon["Content-Type"] == "image/vnd.microsoft.icon"
    assert b"".join(icon)[:4] == b"\x00\x00\x01\x00"  # an ICO header, not an HTML page
    assert "max-age=86400" in icon["Cache-Control"]
    page = client.get("/login/")
    assert page.status_code == 200
    assert 'rel="icon"' in page.content.decode()


def test_is_transient_tells_locks_and_lost_connections_from_bugs():
    assert is_transient(OperationalError("database is locked"))
    assert is_transient(ConnectionError("reset by peer"))
    assert not is_transient(OperationalError("no such table: billing_invoice"))
    assert not is_transient(ValueError("bad"))
    try:
        try:
            raise OperationalError("server closed the connection unexpectedly")
        except OperationalError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
    for retries in range(12):
        delay = backoff_seconds(retries)
        assert 0 < delay <= 300
        assert delay >= min(300, 2**retries) / 2


def test_every_continuum_task_retries_transient_errors():
    ours = [task for name, task in app.tasks.items() if name.startswith(("billing.", "subscriptions."))]
    assert len(ours) >= 10
    for task in ours:
        assert OperationalError in task.autoretry_for, task.name
        assert hasattr(task, "_orig_run"), task.name  # Celery wrapped run() with the retry


def test_task_hitting_a_locked_database_is_retried_not_failed(monkeypatch):
    from billing.services import exemptions

    calls = []

    def expire_due():
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return 0

    monkeypatch.setattr(exemptions, "tax_exemptions_expire_due", expire_due)
    monkeypatch.setattr(exemptions, "tax_exemption_send_reminders", lambda: 0)

    tax_exemptions_daily_task.apply(throw=False)

    assert len(calls) == 2  # the first attempt was not final


def test_stripe_event_meeting_a_locked_database_is_retried_until_processed(monkeypatch):
    # given: a stored event whose handler meets "database is locked" on its first attempt
    event = StripeEvent.objects.create(
        stripe_event_id="evt_locked", type="setup_intent.succeeded", object_id="seti_1", stripe_created=1, payload={}
    )
    calls = []

    def dispatch(stored):
        calls.append(stored.pk)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return True

    monkeypatch.setattr(stripe_events, "_dispatch", dispatch)

    # when: the processing task runs (eagerly here; a worker would wait the backoff first)
    stripe_event_process_task.apply(args=(event.pk,), throw=False)

    # then: retried and processed, not left failed after one attempt
    event.refresh_from_db()
    assert (event.status, event.attempts, len(calls)) == (StripeEventStatus.PROCESSED, 2, 2)


def test_stale_pending_stripe_events_are_queued_again(monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    fresh = StripeEvent.objects.create(stripe_event_id="evt_fresh", type="x.y", stripe_created=1, payload={})
    stale = StripeEvent.objects.create(stripe_event_id="evt_stale", type="x.y", stripe_created=1, payload={})
    StripeEvent.objects.filter(pk=stale.pk).update(received_at=timezone.now() - timedelta(minutes=10))
    queued = []
    monkeypatch.setattr(stripe_events, "_enqueue", queued.append)

    assert stripe_events.stripe_events_requeue_stale() == 1
    assert queued == [stale.pk] and fresh.pk not in queued


def test_stripe_webhook_meeting_a_locked_database_answers_503_so_stripe_redelivers(client, settings, monkeypatch):
    from billing import webhooks
    from tests.billing.stripe_support import WEBHOOK_SECRET, event_payload, signed_headers

    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    payload = event_payload(event_type="customer.updated", obj={"id": "cus_1", "object": "customer"})

    def locked(*, event):
        raise OperationalError("database is locked")

    monkeypatch.setattr(webhooks, "stripe_event_store", locked)
    response = client.post("/stripe/webhook/", payload, content_type="application/json", **signed_headers(payload))

    assert response.status_code == 503 and response["Retry-After"] == "1"
    assert response["Content-Type"] == "application/json"
    assert not StripeEvent.objects.exists()
