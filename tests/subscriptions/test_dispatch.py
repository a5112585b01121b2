"""The on-commit enqueue helper (subscriptions/dispatch.py) against a broker that refuses connections.

A committed change whose hand-off the broker refused must not fail the caller, and the periodic sweep must do the
missed work later: the provisioning drift check, the webhook outbox re-scan (events never fanned out, deliveries
never attempted).
"""

import socket
from datetime import timedelta

import pytest
import time_machine
from celery import current_app
from django.utils import timezone

from subscriptions.dispatch import ENQUEUE_FAILURES, enqueue_on_commit
from subscriptions.models import (
    DeliveryStatus,
    Entitlement,
    EntitlementState,
    Membership,
    ProvisioningRun,
    Role,
    RunOutcome,
    WebhookDelivery,
)
from subscriptions.services.provisioning import entitlements_drift_check, entitlements_reconcile_enqueue
from subscriptions.services.subscriptions import subscription_create
from subscriptions.services.webhooks import webhook_endpoint_create
from subscriptions.tasks import webhook_outbox_rescan_task
from tests.factories import CustomerFactory, SubscriptionFactory, UserFactory, priced_package
from tests.support.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def broker_down(monkeypatch):
    """A real Redis broker URL on a local port nobody listens on; eager mode off, so tasks really are published.

    The app's pooled connections and producers are set aside for the test and put back after it. Celery reads the
    CELERY_BROKER_URL environment variable before its configuration (CI's second pass sets it to the real Redis), so
    both are pointed at the closed port; otherwise the test would publish to the real broker and then close kombu's
    shared pool for it, breaking every later publish in the process ("Acquire on closed pool")."""
    conf = current_app.conf
    saved = {key: conf[key] for key in ("task_always_eager", "broker_url", "task_publish_retry_policy")}
    saved_pools = current_app._pool, current_app.amqp._producer_pool
    current_app._pool = current_app.amqp._producer_pool = None
    down = f"redis://127.0.0.1:{_closed_port()}/1"
    monkeypatch.setenv("CELERY_BROKER_URL", down)
    conf.task_always_eager = False
    conf.broker_url = down
    conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0, "interval_max": 0}
    yield
    test_pool = current_app._pool
    if (
        test_pool is not None
        and test_pool is not saved_pools[0]
        and str(down).split("//")[1] in str(test_pool.connection.as_uri())
    ):
        test_pool.force_close_all()
    current_app._pool, current_app.amqp._producer_pool = saved_pools
    for key, value in saved.items():
        conf[key] = value


def _failures(task: str) -> float:
    return ENQUEUE_FAILURES.labels(task=task)._value.get()


def test_enqueue_on_commit_with_the_broker_down_logs_counts_and_does_not_raise(
    broker_down, caplog, django_capture_on_commit_callbacks
):
    before = _failures("subscriptions.webhook_outbox_rescan")

    with django_capture_on_commit_callbacks(execute=True):
        enqueue_on_commit("subscriptions.webhook_outbox_rescan")

    assert _failures("subscriptions.webhook_outbox_rescan") == before + 1
    assert "subscriptions.webhook_outbox_rescan" in caplog.text


def test_enqueue_on_commit_sends_nothing_before_the_commit(django_capture_on_commit_callbacks):
    subscription = SubscriptionFactory(package=priced_package(slug="team"), seats=2)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger="not yet")
    assert len(callbacks) == 1
    assert ProvisioningRun.objects.get(customer=subscription.customer).outcome == RunOutcome.QUEUED


def test_provisioning_lost_to_a_broker_outage_is_done_by_the_drift_check(
    broker_down, django_capture_on_commit_callbacks
):
    # given: a change whose reconcile hand-off the broker refuses
    subscription = SubscriptionFactory(package=priced_package(slug="team"), seats=4)
    customer = subscription.customer
    before = _failures("subscriptions.entitlements_reconcile")
    with django_capture_on_commit_callbacks(execute=True):
        entitlements_reconcile_enqueue(customer_id=customer.pk, trigger="seats changed")
    assert _failures("subscriptions.entitlements_reconcile") == before + 1
    assert ProvisioningRun.objects.get(customer=customer).outcome == RunOutcome.QUEUED
    assert not Entitlement.objects.filter(customer=customer).exists()

    # when: the periodic drift check runs
    result = entitlements_drift_check()

    # then: the customer is provisioned
    assert result.customers_reconciled >= 1
    seats = Entitlement.objects.get(customer=customer, feature_key="seats", user=None)
    assert (seats.applied_value, seats.state) == (4, EntitlementState.ACTIVE)


def test_webhook_event_lost_to_a_broker_outage_is_delivered_by_the_outbox_rescan(
    broker_down, django_capture_on_commit_callbacks
):
    customer = CustomerFactory()
    owner = UserFactory()
    Membership.objects.create(user=owner, customer=customer, role=Role.OWNER)
    with HttpReceiver() as receiver:
        endpoint = webhook_endpoint_create(
            customer=customer, url=receiver.url("/hooks"), event_types=["subscription.created"], actor=owner
        )
        # given: the subscription commits, the event's dispatch hand-off is refused
        before = _failures("subscriptions.webhook_events_dispatch")
        with django_capture_on_commit_callbacks(execute=True):
            subscription_create(customer=customer, package=priced_package(slug="team"), interval="month", seats=3)
        assert _failures("subscriptions.webhook_events_dispatch") == before + 1
        assert not WebhookDelivery.objects.filter(endpoint=endpoint).exists()

        # when: the broker is back and the beat's re-scan runs after the grace period
        current_app.conf.task_always_eager = True
        later = timezone.now() + timedelta(minutes=5)
        with time_machine.travel(later, tick=False), django_capture_on_commit_callbacks(execute=True):
            webhook_outbox_rescan_task()

        # then: the receiver got the event once
        [request] = receiver.wait_for_requests(1)
    assert request.json()["type"] == "subscription.created"
    assert WebhookDelivery.objects.get(endpoint=endpoint).status == DeliveryStatus.SUCCEEDED
