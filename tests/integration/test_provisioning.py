"""Provisioning end to end: a real Celery worker process (tests/support celery_worker_process), the real broker
(Redis in CI's second pass), the test database, and a real signed-webhook receiver on 127.0.0.1.

Run: CONTINUUM_INTEGRATION=1 CELERY_BROKER_URL=redis://127.0.0.1:6379/0 pytest tests/integration/test_provisioning.py
"""

import re

import pytest

from subscriptions.models import Entitlement, EntitlementState, ProvisioningRun, RunOutcome
from subscriptions.selectors import enablement_status
from subscriptions.services.changes import subscription_change_seats_apply
from subscriptions.services.provisioning import entitlements_reconcile_enqueue
from subscriptions.services.subscriptions import subscription_create
from subscriptions.tasks import entitlements_reconcile_task
from tests.factories import CustomerFactory, priced_package
from tests.subscriptions.provisioning_receiver import Receiver
from tests.support.processes import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SUCCEEDED = re.compile(r"Task subscriptions\.entitlements_reconcile\[[^\]]+\] succeeded")
WORKER_ENV = {
    # Fast, still exponential and jittered: 0.1, 0.2, 0.4 s ceilings; three retries after the first attempt.
    "PROVISIONING_RETRY_BASE_SECONDS": "0.1",
    "PROVISIONING_MAX_RETRIES": "3",
}


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def builtin_worker(request, monkeypatch):
    for key, value in {**WORKER_ENV, "PROVISIONER_BACKEND": "builtin"}.items():
        monkeypatch.setenv(key, value)
    return request.getfixturevalue("celery_worker_process")


@pytest.fixture
def webhook_worker(request, monkeypatch, receiver):
    # The worker process reads these at start-up (portal/settings.py); the fixture starts it after they are set.
    for key, value in {**WORKER_ENV, **receiver.env()}.items():
        monkeypatch.setenv(key, value)
    return request.getfixturevalue("celery_worker_process")


@pytest.fixture
def team():
    return priced_package(slug="team")


def _subscribe(team, seats=3):
    customer = CustomerFactory()
    subscription = subscription_create(customer=customer, package=team, interval="month", seats=seats)
    return customer, subscription


def _wait_state(customer, state, *, timeout=30):
    wait_until(
        lambda: enablement_status(customer).state == state,
        timeout=timeout,
        what=f"enablement of {customer} to be {state} (now {enablement_status(customer)})",
    )


def _seats(customer):
    return Entitlement.objects.values_list("applied_value", "state").get(customer=customer, feature_key="seats")


def test_entitlements_reconcile_task_seat_change_becomes_active(builtin_worker, team):
    # given: a new subscription, enabled by the worker
    customer, subscription = _subscribe(team, seats=3)
    _wait_state(customer, "active")
    assert _seats(customer) == (3, EntitlementState.ACTIVE)

    # when: the customer buys two more seats (committed, then queued)
    subscription.refresh_from_db()
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=5, expected_version=subscription.version, actor=None
    )

    # then: the worker switches them on
    wait_until(lambda: _seats(customer) == (5, EntitlementState.ACTIVE), timeout=30, what="5 active seats")
    _wait_state(customer, "active")
    assert enablement_status(customer).last_time_taken_ms is not None


def test_entitlements_reconcile_task_killed_worker_task_is_redelivered_and_completes(webhook_worker, receiver, team):
    # given: the receiver holds the first push open, so the worker is mid-run (inside its transaction)
    receiver.stall_next = 1
    receiver.stall_seconds = 20
    customer, _ = _subscribe(team, seats=4)
    assert receiver.stalled.wait(30), "the worker never pushed"

    # when: the worker dies without acknowledging the task
    if webhook_worker.redelivers_after_kill:
        webhook_worker.kill()  # the whole worker, as if the machine died
        webhook_worker.restart()
    else:
        webhook_worker.kill(whole_group=False)  # the pool process; the parent requeues the task

    # then: the redelivered task completes the same run
    _wait_state(customer, "active")
    assert _seats(customer) == (4, EntitlementState.ACTIVE)
    runs = list(ProvisioningRun.objects.filter(customer=customer))
    assert [run.outcome for run in runs] == [RunOutcome.APPLIED]
    assert len(receiver.accepted) == 1 and receiver.accepted[0]["run_id"] == runs[0].pk


def test_entitlements_reconcile_task_duplicate_deliveries_have_one_effect(webhook_worker, receiver, team):
    # given: a committed change and its queued run
    customer, _ = _subscribe(team, seats=2)
    run = ProvisioningRun.objects.get(customer=customer)

    # when: the broker delivers the same message twice more, and another change's reconcile arrives too
    for _ in range(2):
        entitlements_reconcile_task.delay(customer.pk, run.trigger, run.pk)
    entitlements_reconcile_enqueue(customer_id=customer.pk, trigger="a late duplicate")

    # then: one push, one applied run; the rest found nothing to do
    wait_until(
        lambda: len(SUCCEEDED.findall(webhook_worker.log_text)) == 4,
        timeout=30,
        what="all four deliveries to be processed",
    )
    assert len(receiver.accepted) == 1
    outcomes = sorted(ProvisioningRun.objects.filter(customer=customer).values_list("outcome", flat=True))
    assert outcomes.count(RunOutcome.APPLIED) == 1
    assert set(outcomes) <= {RunOutcome.APPLIED, RunOutcome.NOOP, RunOutcome.SUPERSEDED}
    assert _seats(customer) == (2, EntitlementState.ACTIVE)


def test_entitlements_reconcile_task_failing_receiver_is_retried_until_it_succeeds(webhook_worker, receiver, team):
    receiver.fail_next = 3

    customer, _ = _subscribe(team, seats=6)

    _wait_state(customer, "active")
    assert receiver.failed == 3 and len(receiver.accepted) == 1
    runs = list(ProvisioningRun.objects.filter(customer=customer).order_by("id"))
    assert [(run.attempt, run.outcome) for run in runs] == [
        (1, RunOutcome.RETRYING),
        (2, RunOutcome.RETRYING),
        (3, RunOutcome.RETRYING),
        (4, RunOutcome.APPLIED),
    ]
    assert _seats(customer) == (6, EntitlementState.ACTIVE)


def test_entitlements_reconcile_task_permanent_failure_is_visible(webhook_worker, receiver, team):
    receiver.fail_next = 1_000

    customer, _ = _subscribe(team, seats=6)

    _wait_state(customer, "failed")
    status = enablement_status(customer)
    assert "HTTP 503" in status.last_error
    assert set(Entitlement.objects.filter(customer=customer).values_list("state", flat=True)) == {
        EntitlementState.FAILED
    }
    last = ProvisioningRun.objects.filter(customer=customer).order_by("-id").first()
    assert (last.attempt, last.outcome) == (4, RunOutcome.FAILED)
    assert "Gave up after 4 attempts" in last.error
    assert receiver.failed == 4 and receiver.accepted == []
