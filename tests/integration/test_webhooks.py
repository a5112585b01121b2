"""Outbound webhooks end to end: real Celery worker processes — one on the default queue (enablement), one on the
`webhooks` queue — the real broker (Redis in CI's second pass), the test database and a real receiver on 127.0.0.1.

Run: CONTINUUM_INTEGRATION=1 pytest tests/integration/test_webhooks.py
"""

import time

import pytest

from subscriptions.models import DeliveryStatus, Event, WebhookAttempt, WebhookDelivery
from subscriptions.selectors import enablement_status
from subscriptions.services import events as event_services
from subscriptions.services.subscriptions import subscription_create
from subscriptions.services.webhooks import webhook_endpoint_create
from subscriptions.tasks import webhook_outbox_rescan_task
from tests.factories import CustomerFactory, priced_package
from tests.support.celery_worker import CeleryWorkerProcess
from tests.support.http_receiver import HttpReceiver
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TIMEOUT = 3  # seconds per webhook request in these workers (production: 5)


@pytest.fixture
def workers(request, monkeypatch):
    for key, value in {
        "PROVISIONER_BACKEND": "builtin",
        "WEBHOOK_TIMEOUT_SECONDS": str(TIMEOUT),
        "WEBHOOK_CLAIM_SECONDS": "5",  # a dead worker's hold expires quickly
        "WEBHOOK_RESCAN_GRACE_SECONDS": "0",
        "WEBHOOK_RETRY_BASE_SECONDS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    default = request.getfixturevalue("celery_worker_process")  # the default queue only
    hooks = CeleryWorkerProcess(
        database_url=default.database_url,
        broker_url=default.broker_url,
        transport_options=default.transport_options,
        log_dir=default.log_dir,
        queues=("webhooks",),
    )
    hooks.start()
    try:
        yield default, hooks
    finally:
        hooks.stop()


@pytest.fixture
def team():
    return priced_package(slug="team")


def _enable(team) -> tuple[object, float]:
    """Subscribe a new customer and return it with the seconds until its enablement was active."""
    customer = CustomerFactory()
    started = time.monotonic()
    subscription_create(customer=customer, package=team, interval="month", seats=3)
    wait_until(lambda: enablement_status(customer).state == "active", timeout=60, what="enablement", interval=0.05)
    return customer, time.monotonic() - started


def test_webhook_never_answering_receiver_times_out_and_enablement_is_not_delayed(workers, team):
    _, baseline = _enable(team)  # no endpoint anywhere
    with HttpReceiver(delay=60) as receiver:  # accepts the request, never answers
        customer = CustomerFactory()
        webhook_endpoint_create(customer=customer, url=receiver.url("/in"), event_types=["*"], actor=None)
        started = time.monotonic()
        subscription_create(customer=customer, package=team, interval="month", seats=3)
        wait_until(lambda: enablement_status(customer).state == "active", timeout=60, what="enablement")
        with_receiver = time.monotonic() - started
        receiver.wait_for_requests(1, timeout=30)
        # then: the attempt is cut off after the timeout and will be retried
        attempt = wait_until(
            lambda: WebhookAttempt.objects.filter(delivery__endpoint__customer=customer).first(),
            timeout=30,
            what="the timed-out attempt",
        )
    assert attempt.error == f"No answer within {TIMEOUT} s." and attempt.status_code is None
    assert TIMEOUT * 1000 <= attempt.latency_ms < (TIMEOUT + 2) * 1000
    assert attempt.delivery.status == DeliveryStatus.PENDING
    # enablement did not wait for the receiver: well under one webhook timeout, and about as fast as without it
    assert with_receiver < max(TIMEOUT, baseline * 2 + 1), (with_receiver, baseline)


def test_webhook_killed_worker_loses_no_event(workers, team, monkeypatch):
    _, hooks = workers
    with HttpReceiver(delay=2) as receiver:  # slow but within the timeout
        customer = CustomerFactory()
        endpoint = webhook_endpoint_create(
            customer=customer, url=receiver.url("/in"), event_types=["subscription.created"], actor=None
        )
        subscription_create(customer=customer, package=team, interval="month", seats=3)
        # when: the webhooks worker dies while the receiver is still answering
        receiver.wait_for_requests(1, timeout=30)
        hooks.kill()
        delivery = WebhookDelivery.objects.get(endpoint=endpoint)
        assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
        # and: an event whose after-commit message never reached the broker (a broker outage at commit)
        monkeypatch.setattr(event_services, "_dispatch_after_commit", lambda public_ids: None)
        lost = subscription_create(customer=customer, package=team, interval="year", seats=4)
        assert Event.objects.get(type="subscription.created", object_id=str(lost.pk)).dispatched_at is None
        hooks.restart()

        # then: beat's outbox re-scan (run here as beat would, every minute) sends both, once each
        def both_delivered():
            webhook_outbox_rescan_task.delay()
            done = WebhookDelivery.objects.filter(endpoint=endpoint, status=DeliveryStatus.SUCCEEDED).count()
            return done == 2

        wait_until(both_delivered, timeout=60, what="both deliveries to succeed", interval=2)
        time.sleep(3)  # nothing more arrives afterwards
        received = receiver.requests
    succeeded = WebhookAttempt.objects.filter(delivery__endpoint=endpoint, succeeded=True)
    assert succeeded.count() == 2
    ids = {request.json()["data"]["id"] for request in received}
    assert ids == {delivery.event.data["id"], lost.pk}
