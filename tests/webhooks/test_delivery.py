"""Outbound webhooks against a real HTTP receiver on 127.0.0.1 (tests/support/http_receiver.py).

Tasks run eagerly (portal/settings_test.py); retries are driven the way production drives them, by the outbox
re-scan once the clock (pinned with time-machine) reaches a delivery's next attempt.
"""

import hashlib
import hmac
from datetime import timedelta

import jsonschema
import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from portal.celery import app
from subscriptions.exceptions import WebhookUrlRefused
from subscriptions.models import DeliveryStatus, Event, Membership, Role, WebhookAttempt, WebhookDelivery
from subscriptions.services import events as events_module
from subscriptions.services.subscriptions import subscription_create
from subscriptions.services.webhooks import (
    SIGNATURE_HEADER,
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
    webhook_url_check,
    webhook_verify,
)
from subscriptions.tasks import webhook_outbox_rescan_task
from subscriptions.webhook_schemas import event_schema
from tests.factories import CustomerFactory, UserFactory, priced_package
from tests.support.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db


def continuum_signature_check(secret: str):
    """What an integrator writes (docs/webhooks.md): HMAC-SHA256(secret, t + "." + body) in `t=…,v1=…`."""

    def check(request) -> bool:
        header = request.header(SIGNATURE_HEADER) or ""
        parts = dict(item.split("=", 1) for item in header.split(",") if item.startswith("t="))
        signatures = [item[3:] for item in header.split(",") if item.startswith("v1=")]
        expected = hmac.new(secret.encode(), parts.get("t", "").encode() + b"." + request.body, hashlib.sha256)
        return any(hmac.compare_digest(expected.hexdigest(), signature) for signature in signatures)

    return check


@pytest.fixture
def owner_customer():
    customer = CustomerFactory()
    owner = UserFactory(email="owner@integrator.test")
    Membership.objects.create(user=owner, customer=customer, role=Role.OWNER)
    return customer, owner


@pytest.fixture
def team():
    return priced_package(slug="team")


def _endpoint(customer, owner, receiver, types=("subscription.created",)):
    return webhook_endpoint_create(customer=customer, url=receiver.url("/hooks"), event_types=list(types), actor=owner)


def _subscribe(customer, team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return subscription_create(customer=customer, package=team, interval="month", seats=3)


def _run_rescan_at(moment, django_capture_on_commit_callbacks):
    with time_machine.travel(moment, tick=False), django_capture_on_commit_callbacks(execute=True):
        return webhook_outbox_rescan_task()


def test_webhook_delivery_signed_and_matches_its_schema(owner_customer, team, django_capture_on_commit_callbacks):
    # given: an owner's endpoint for subscription.created, on a receiver that verifies our signature
    customer, owner = owner_customer
    with HttpReceiver() as receiver:
        endpoint = _endpoint(customer, owner, receiver)
        receiver.signature_check = continuum_signature_check(endpoint.secret)
        # when
        subscription = _subscribe(customer, team, django_capture_on_commit_callbacks)
        # then: one signed POST, answered 200, with the documented payload
        [request] = receiver.wait_for_requests(1)
    assert request.signature_valid is True and request.status == 200
    payload = request.json()
    jsonschema.validate(payload, event_schema("subscription.created"))
    assert payload["type"] == "subscription.created"
    assert payload["customer"] == customer.pk
    assert payload["data"]["id"] == subscription.pk and payload["data"]["seats"] == 3
    assert payload["sequence"] == 1
    assert request.header("Continuum-Event-Id") == payload["id"]
    assert webhook_verify(secret=endpoint.secret, header=request.header(SIGNATURE_HEADER), body=request.body)
    assert not webhook_verify(secret="whsec_wrong", header=request.header(SIGNATURE_HEADER), body=request.body)
    assert not webhook_verify(secret=endpoint.secret, header=request.header(SIGNATURE_HEADER), body=request.body + b" ")
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 1
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.succeeded and attempt.status_code == 200 and attempt.response_excerpt == '{"ok": true}'


def test_webhook_other_customers_and_unsubscribed_types_are_not_sent(
    owner_customer, team, django_capture_on_commit_callbacks
):
    customer, owner = owner_customer
    with HttpReceiver() as receiver:
        _endpoint(customer, owner, receiver, types=("invoice.paid",))
        _subscribe(customer, team, django_capture_on_commit_callbacks)  # not a type it asked for
        _subscribe(CustomerFactory(), team, django_capture_on_commit_callbacks)  # another customer
        assert receiver.requests == []
    assert Event.objects.filter(type="subscription.created").count() == 2
    assert Event.objects.filter(dispatched_at__isnull=True).count() == 0


def test_webhook_events_nobody_wants_queue_no_fan_out_and_a_staff_endpoint_gets_every_customer(
    owner_customer, team, django_capture_on_commit_callbacks, monkeypatch
):
    # given: one customer with an endpoint; a second customer without one
    customer, owner = owner_customer
    other = CustomerFactory()
    with HttpReceiver() as receiver:
        _endpoint(customer, owner, receiver)
        # when: the second customer subscribes (the outbox's after-commit messages recorded, then sent)
        sent = []
        real_send = events_module.send_now
        monkeypatch.setattr(events_module, "send_now", lambda name, **kw: sent.append(name) or real_send(name, **kw))
        with django_capture_on_commit_callbacks(execute=True):
            subscription_create(customer=other, package=team, interval="month", seats=3)
        # then: its event is kept in the log but recorded as dispatched, and no fan-out is queued for it
        event = Event.objects.get(customer=other, type="subscription.created")
        assert event.dispatched_at is not None
        assert "subscriptions.webhook_events_dispatch" not in sent
        # and the customer with the endpoint still receives its own event
        _subscribe(customer, team, django_capture_on_commit_callbacks)
        [request] = receiver.wait_for_requests(1)
        assert request.json()["customer"] == customer.pk
        # when: staff add an endpoint for every customer's events; then the second customer's next event is sent
        webhook_endpoint_create(customer=None, url=receiver.url("/all"), event_types=["*"], actor=None)
        with django_capture_on_commit_callbacks(execute=True):
            subscription_create(customer=other, package=team, interval="year", seats=2)
        requests = receiver.wait_for_requests(2)
    assert requests[1].path == "/all" and requests[1].json()["customer"] == other.pk
    assert not Event.objects.filter(dispatched_at__isnull=True).exists()


def test_webhook_delivery_fails_three_times_then_succeeds_exactly_once(
    owner_customer, team, django_capture_on_commit_callbacks
):
    customer, owner = owner_customer
    start = timezone.now()
    with HttpReceiver() as receiver:
        with time_machine.travel(start, tick=False):
            endpoint = _endpoint(customer, owner, receiver)
            receiver.fail_next(3)
            _subscribe(customer, team, django_capture_on_commit_callbacks)
            delivery = WebhookDelivery.objects.get(endpoint=endpoint)
            assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 1
            # the re-scan does nothing before the retry is due
            assert webhook_outbox_rescan_task() == 0
        # when: the clock reaches each retry in turn (exponential backoff with jitter), and then much later
        for _ in range(6):
            delivery.refresh_from_db()
            moment = delivery.next_attempt_at or (timezone.now() + timedelta(hours=1))
            _run_rescan_at(moment + timedelta(seconds=1), django_capture_on_commit_callbacks)
    # then: 3 failures and 1 success, the same event each time, nothing after the success
    requests = receiver.requests
    assert [r.status for r in requests] == [503, 503, 503, 200]
    assert len({r.json()["id"] for r in requests}) == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 4
    gaps = list(
        WebhookAttempt.objects.filter(delivery=delivery).order_by("attempted_at").values_list("attempted_at", flat=True)
    )
    assert gaps[1] - gaps[0] < gaps[3] - gaps[2]  # backoff grows


def test_webhook_never_answering_receiver_is_timed_out(
    owner_customer, team, django_capture_on_commit_callbacks, settings
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    customer, owner = owner_customer
    with HttpReceiver(delay=3) as receiver:
        endpoint = _endpoint(customer, owner, receiver)
        _subscribe(customer, team, django_capture_on_commit_callbacks)
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert not attempt.succeeded and attempt.status_code is None
    assert attempt.error == "No answer within 0.5 s."
    assert 400 <= attempt.latency_ms < 2500
    delivery = attempt.delivery
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at > timezone.now()


def test_webhook_tasks_run_on_their_own_queue():
    # A slow receiver occupies only the `webhooks` workers; enablement and billing tasks have queues of their own.
    router = app.amqp.router
    for name in ("webhook_events_dispatch", "webhook_delivery_attempt", "webhook_outbox_rescan"):
        assert router.route({}, f"subscriptions.{name}")["queue"].name == "webhooks"
    assert router.route({}, "subscriptions.entitlements_reconcile")["queue"].name == "provisioning"
    assert router.route({}, "billing.billing_run")["queue"].name == "billing"


def test_webhook_endpoint_disabled_after_three_days_of_failures_and_owner_emailed(
    owner_customer, team, django_capture_on_commit_callbacks
):
    customer, owner = owner_customer
    start = timezone.now()
    with HttpReceiver(status=500) as receiver:
        with time_machine.travel(start, tick=False):
            endpoint = _endpoint(customer, owner, receiver)
            _subscribe(customer, team, django_capture_on_commit_callbacks)
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        for _ in range(60):
            delivery.refresh_from_db()
            if delivery.status != DeliveryStatus.PENDING:
                break
            _run_rescan_at(delivery.next_attempt_at + timedelta(seconds=1), django_capture_on_commit_callbacks)
    assert delivery.status == DeliveryStatus.FAILED
    last = WebhookAttempt.objects.filter(delivery=delivery).order_by("-attempted_at").first().attempted_at
    assert timedelta(days=2) < last - start <= timedelta(days=3)
    endpoint.refresh_from_db()
    assert endpoint.enabled is False and "3 days" in endpoint.disabled_reason
    [message] = mail.outbox
    assert message.to == ["owner@integrator.test"] and endpoint.url in message.body


def test_webhook_rotated_secret_signs_with_both_during_the_overlap(owner_customer, django_capture_on_commit_callbacks):
    customer, owner = owner_customer
    with HttpReceiver() as receiver:
        endpoint = _endpoint(customer, owner, receiver)
        old = endpoint.secret
        endpoint = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=owner, overlap_hours=24)
        assert endpoint.secret != old
        with django_capture_on_commit_callbacks(execute=True):
            webhook_endpoint_send_test(endpoint_id=endpoint.pk, actor=owner)
        later = timezone.now() + timedelta(hours=25)
        with time_machine.travel(later), django_capture_on_commit_callbacks(execute=True):
            webhook_endpoint_send_test(endpoint_id=endpoint.pk, actor=owner)
        first, second = receiver.wait_for_requests(2)
    header = first.header(SIGNATURE_HEADER)
    assert webhook_verify(secret=old, header=header, body=first.body)
    assert webhook_verify(secret=endpoint.secret, header=header, body=first.body)
    jsonschema.validate(first.json(), event_schema("webhook_endpoint.test"))
    # after the overlap only the new secret signs
    header = second.header(SIGNATURE_HEADER)
    sent_at = int(header.split(",")[0][2:])
    assert not webhook_verify(secret=old, header=header, body=second.body, now=sent_at)
    assert webhook_verify(secret=endpoint.secret, header=header, body=second.body, now=sent_at)


def test_webhook_delivery_resend_sends_the_same_event_again(owner_customer, team, django_capture_on_commit_callbacks):
    customer, owner = owner_customer
    with HttpReceiver() as receiver:
        endpoint = _endpoint(customer, owner, receiver)
        _subscribe(customer, team, django_capture_on_commit_callbacks)
        original = WebhookDelivery.objects.get(endpoint=endpoint)
        with django_capture_on_commit_callbacks(execute=True):
            resent = webhook_delivery_resend(delivery_id=original.pk, actor=owner)
        first, second = receiver.wait_for_requests(2)
    assert first.json()["id"] == second.json()["id"]
    resent.refresh_from_db()
    assert resent.kind == "resend" and resent.status == DeliveryStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("not a url", "url_invalid"),
        ("", "url_invalid"),
        ("ftp://example.com/hook", "url_not_https"),
        ("https://user:secret@127.0.0.1/hook", "url_credentials"),
        ("https://10.1.2.3/hook", "url_private_address"),
        ("https://192.168.0.10/hook", "url_private_address"),
        ("https://169.254.169.254/latest/meta-data", "url_private_address"),
        ("https://[fe80::1]/hook", "url_private_address"),
        ("https://[::ffff:10.0.0.1]/hook", "url_private_address"),
        ("https://0.0.0.0/hook", "url_private_address"),
        ("https://hooks.invalid/hook", "url_unresolvable"),
        ("https://127.0.0.1:99999/hook", "url_invalid"),
    ],
)
def test_webhook_endpoint_create_refuses_bad_urls_with_codes(owner_customer, url, code):
    customer, owner = owner_customer
    with pytest.raises(WebhookUrlRefused) as refused:
        webhook_endpoint_create(customer=customer, url=url, event_types=["invoice.paid"], actor=owner)
    assert refused.value.code == code
    assert not customer.webhook_endpoints.exists()


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1:8171/hook", "url_not_https"),
        ("https://127.0.0.1/hook", "url_private_address"),
        ("https://localhost/hook", "url_private_address"),
        ("https://[::1]/hook", "url_private_address"),
    ],
)
def test_webhook_url_check_refuses_loopback_without_the_test_setting(settings, url, code):
    settings.WEBHOOKS_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(WebhookUrlRefused) as refused:
        webhook_url_check(url)
    assert refused.value.code == code


def test_webhook_url_checked_again_at_delivery_time(owner_customer, team, django_capture_on_commit_callbacks, settings):
    # given: an endpoint saved while loopback was allowed; production rules apply by the time it is sent to
    customer, owner = owner_customer
    with HttpReceiver() as receiver:
        endpoint = _endpoint(customer, owner, receiver)
        settings.WEBHOOKS_ALLOW_LOOPBACK_HTTP = False
        _subscribe(customer, team, django_capture_on_commit_callbacks)
        assert receiver.requests == []
    attempt = WebhookAttempt.objects.get(delivery__endpoint=endpoint)
    assert attempt.error.startswith("url_not_https:")
