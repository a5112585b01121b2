"""Events that move a health score recompute it soon, debounced; a lost message is caught up by the sweep and the
nightly run; stage changes are internal customer.stage_changed events (staff endpoints only)."""

from datetime import timedelta

import pytest
import time_machine
from celery import current_app

import portal.tasks  # noqa: F401 - registers portal.customer_health_recompute_marked (a worker autodiscovers it)
from billing.models import CustomerHealthSnapshot, JourneyStageChange
from portal.services.health import customer_health_recompute, customer_health_recompute_marked
from subscriptions import clock
from subscriptions.exceptions import WebhookEventTypesInvalid
from subscriptions.models import Event, HealthRecomputeMark, Membership, Role, WebhookDelivery
from subscriptions.services import health_marks
from subscriptions.services.health_marks import health_marks_record
from subscriptions.services.members import membership_remove
from subscriptions.services.webhooks import webhook_endpoint_create
from tests.factories import CustomerFactory, UserFactory
from tests.subscriptions.test_dispatch import broker_down  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def pinned():
    with time_machine.travel(clock.now(), tick=False):
        yield


def _team(active_members: int, inactive_members: int):
    customer = CustomerFactory()
    owner = UserFactory(last_login=clock.now() - timedelta(days=1))
    Membership.objects.create(user=owner, customer=customer, role=Role.OWNER)
    members = []
    for index in range(active_members + inactive_members):
        days = 1 if index < active_members else 60
        user = UserFactory(last_login=clock.now() - timedelta(days=days))
        members.append(Membership.objects.create(user=user, customer=customer, role=Role.MEMBER))
    return customer, owner, members


def _snapshots(customer):
    return list(CustomerHealthSnapshot.objects.filter(customer=customer).order_by("id"))


def test_removing_a_member_recomputes_that_customers_score_once_after_commit(django_capture_on_commit_callbacks):
    # given: owner active, one member active, one not: activity 2 of 3 = 67
    customer, owner, [active, idle] = _team(1, 1)
    other = CustomerFactory()
    customer_health_recompute(customer_ids=[customer.pk, other.pk])
    assert _snapshots(customer)[-1].components["activity"] == 67

    # when: the idle member is removed (member.removed)
    with django_capture_on_commit_callbacks(execute=True):
        membership_remove(membership_id=idle.pk, actor=owner)

    # then: one more snapshot for this customer only, with 2 of 2 active; no mark is left
    snapshots = _snapshots(customer)
    assert len(snapshots) == 2 and snapshots[-1].components["activity"] == 100
    assert len(_snapshots(other)) == 1
    assert not HealthRecomputeMark.objects.exists()


def test_many_events_before_the_recompute_runs_cause_one_recompute(django_capture_on_commit_callbacks):
    customer, owner, members = _team(2, 3)
    # the worker is slow (countdown): fifty events in separate transactions leave one mark and one queued message
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        for _ in range(50):
            health_marks_record([customer.pk], reason="payment.failed")
    assert len(callbacks) == 1
    assert HealthRecomputeMark.objects.filter(customer=customer).count() == 1
    for membership in members[:3]:
        with django_capture_on_commit_callbacks(execute=False) as more:
            membership_remove(membership_id=membership.pk, actor=owner)
        assert more == []  # still waiting for the first message: nothing more queued
    # when the message runs: one snapshot; a duplicate delivery finds no mark and does nothing
    assert customer_health_recompute_marked(customer_id=customer.pk) == 1
    assert customer_health_recompute_marked(customer_id=customer.pk) == 0
    assert len(_snapshots(customer)) == 1
    # an event after the recompute took the mark queues again
    with django_capture_on_commit_callbacks(execute=False) as later:
        health_marks_record([customer.pk], reason="member.removed")
    assert len(later) == 1


def test_customers_marked_together_share_one_message_per_batch_and_each_is_recomputed(
    django_capture_on_commit_callbacks, monkeypatch
):
    # a drift check or billing run marks many customers in one transaction: one message per batch, not per customer
    monkeypatch.setattr(health_marks, "RECOMPUTE_BATCH", 2)
    teams = [_team(1, 0) for _ in range(3)]
    ids = [customer.pk for customer, _owner, _members in teams]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert health_marks_record(ids, reason="entitlement.updated") == sorted(ids)
    assert len(callbacks) == 2  # 3 customers in batches of 2
    # when the messages run (as the worker would), every marked customer is scored once and no mark is left
    for callback in callbacks:
        callback()
    assert [len(_snapshots(customer)) for customer, _owner, _members in teams] == [1, 1, 1]
    assert not HealthRecomputeMark.objects.exists()


def test_a_mark_whose_message_was_lost_is_queued_again_after_the_rearm_time(django_capture_on_commit_callbacks):
    customer = CustomerFactory()
    with django_capture_on_commit_callbacks(execute=False):
        health_marks_record([customer.pk])
    later = time_machine.travel(clock.now() + timedelta(minutes=11), tick=False)
    with later, django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert health_marks_record([customer.pk]) == [customer.pk]
    assert len(callbacks) == 1


@pytest.mark.usefixtures("broker_down")
def test_with_the_broker_down_the_sweep_and_the_nightly_run_still_catch_up(django_capture_on_commit_callbacks):
    customer, owner, [idle] = _team(0, 1)
    swept, swept_owner, [idle_too] = _team(0, 1)
    # when: members are removed while the broker refuses every message
    with django_capture_on_commit_callbacks(execute=True):
        membership_remove(membership_id=idle.pk, actor=owner)
        membership_remove(membership_id=idle_too.pk, actor=swept_owner)
    assert not CustomerHealthSnapshot.objects.exists()
    assert HealthRecomputeMark.objects.count() == 2
    current_app.conf.task_always_eager = True
    # then: the nightly run scores everyone and takes their marks
    assert customer_health_recompute(customer_ids=[customer.pk]) == 1
    assert _snapshots(customer)[-1].facts["members"] == 1
    # and the sweep (after the debounce delay) recomputes the mark left
    assert customer_health_recompute_marked() == 0  # not yet: within the delay
    with time_machine.travel(clock.now() + timedelta(minutes=2), tick=False):
        assert customer_health_recompute_marked() == 1
    assert _snapshots(swept)[-1].facts["members"] == 1
    assert not HealthRecomputeMark.objects.exists()


def test_a_stage_change_is_an_internal_event_recorded_with_it_and_sent_only_to_staff_endpoints():
    customer = CustomerFactory()
    owner = UserFactory()
    Membership.objects.create(user=owner, customer=customer, role=Role.OWNER)
    staff_endpoint = webhook_endpoint_create(
        customer=None, url="http://127.0.0.1:9/cs", event_types=["customer.stage_changed"], actor=None
    )
    own_endpoint = webhook_endpoint_create(
        customer=customer, url="http://127.0.0.1:9/own", event_types=["*"], actor=owner
    )
    # a customer's endpoint cannot ask for it
    with pytest.raises(WebhookEventTypesInvalid):
        webhook_endpoint_create(
            customer=customer, url="http://127.0.0.1:9/x", event_types=["customer.stage_changed"], actor=owner
        )

    customer_health_recompute(customer_ids=[customer.pk])
    customer_health_recompute(customer_ids=[customer.pk])  # same stage: no second change, no second event

    change = JourneyStageChange.objects.get(customer=customer)
    event = Event.objects.get(type="customer.stage_changed")
    assert event.data == {
        "object": "customer",
        "id": customer.pk,
        "previous_stage": None,
        "stage": change.to_stage,
        "changed_at": change.changed_at.isoformat().replace("+00:00", "Z"),
    }
    assert "score" not in event.data
    from subscriptions.services.webhooks import webhook_events_dispatch

    webhook_events_dispatch(public_ids=[event.public_id])
    assert list(WebhookDelivery.objects.filter(event=event).values_list("endpoint_id", flat=True)) == [
        staff_endpoint.pk
    ]
    assert not WebhookDelivery.objects.filter(endpoint=own_endpoint, event=event).exists()


def test_the_webhook_schema_lists_the_same_stages_as_the_formulas():
    from billing.health.formulas import STAGES
    from subscriptions.webhook_schemas import JOURNEY_STAGES

    assert list(STAGES) == JOURNEY_STAGES
