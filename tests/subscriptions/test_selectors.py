from datetime import timedelta

import pytest

from subscriptions.models import Subscription, SubscriptionStatus
from subscriptions.selectors import (
    JourneyStage,
    audit_for_customer,
    customer_journey_stage,
    packages_public,
    seats_assigned_count,
    seats_at,
    subscription_for_customer,
)
from subscriptions.services.audit import audit_record
from subscriptions.services.changes import subscription_change_seats_apply
from tests.factories import CustomerFactory, SeatAssignmentFactory, SubscriptionFactory, UserFactory, utc

# Scenario dates around the worked-example month: the clock is pinned there (tests/clock.py), the subscriptions run
# [1 Nov 2026, 1 Dec 2026) as these expectations were written for.
pytestmark = pytest.mark.usefixtures("worked_example_clock")

NOW = utc(2027, 3, 1)


def _subscribed(catalog, *, days_ago, seats=10, assigned=0, **fields):
    subscription = SubscriptionFactory(package=catalog.team, seats=seats, **fields)
    Subscription.objects.filter(pk=subscription.pk).update(created_at=NOW - timedelta(days=days_ago))
    for _ in range(assigned):
        SeatAssignmentFactory(subscription=subscription)
    return subscription.customer


def test_customer_journey_stage_onboarding_without_subscription_trial_or_new(catalog):
    assert customer_journey_stage(CustomerFactory(), as_of=NOW) == JourneyStage.ONBOARDING
    assert customer_journey_stage(_subscribed(catalog, days_ago=10), as_of=NOW) == JourneyStage.ONBOARDING
    trial = _subscribed(catalog, days_ago=200, status=SubscriptionStatus.TRIALING, assigned=10)
    assert customer_journey_stage(trial, as_of=NOW) == JourneyStage.ONBOARDING


def test_customer_journey_stage_adopting_and_established_by_age_and_seat_use(catalog):
    assert customer_journey_stage(_subscribed(catalog, days_ago=45, assigned=9), as_of=NOW) == JourneyStage.ADOPTING
    assert customer_journey_stage(_subscribed(catalog, days_ago=120, assigned=4), as_of=NOW) == JourneyStage.ADOPTING
    assert customer_journey_stage(_subscribed(catalog, days_ago=120, assigned=5), as_of=NOW) == (
        JourneyStage.ESTABLISHED
    )


def test_customer_journey_stage_at_risk_and_churned(catalog):
    past_due = _subscribed(catalog, days_ago=120, assigned=9, status=SubscriptionStatus.PAST_DUE)
    assert customer_journey_stage(past_due, as_of=NOW) == JourneyStage.AT_RISK
    leaving = _subscribed(catalog, days_ago=120, assigned=9, cancel_at_period_end=True)
    assert customer_journey_stage(leaving, as_of=NOW) == JourneyStage.AT_RISK
    gone = _subscribed(catalog, days_ago=400, status=SubscriptionStatus.ENDED)
    assert customer_journey_stage(gone, as_of=NOW) == JourneyStage.CHURNED


def test_subscription_for_customer_prefers_live(catalog):
    customer = CustomerFactory()
    assert subscription_for_customer(customer=customer) is None
    live = SubscriptionFactory(customer=customer, package=catalog.team)
    SubscriptionFactory(customer=customer, package=catalog.team, status=SubscriptionStatus.ENDED)
    assert subscription_for_customer(customer=customer) == live


def test_seats_at_answers_from_the_ledger(subscription):
    from subscriptions.models import SeatLedgerEntry

    SeatLedgerEntry.objects.create(
        subscription=subscription, seats_from=0, seats_to=10, reason="subscribed", effective_at=utc(2026, 11, 1)
    )
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=12, expected_version=1, actor=None, at=utc(2026, 11, 12)
    )
    assert seats_at(subscription=subscription, moment=utc(2026, 10, 31)) == 0
    assert seats_at(subscription=subscription, moment=utc(2026, 11, 11)) == 10
    assert seats_at(subscription=subscription, moment=utc(2026, 11, 12, 1)) == 12
    assert seats_assigned_count(subscription=subscription) == 0


def test_packages_public_query_count_does_not_grow(catalog, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        packages = packages_public(currency="USD", interval="month")
        names = [(p.name, [c.sku.code for c in p.components.all()], len(p.active_prices)) for p in packages]
        [list(p.addons.all()) for p in packages]
    assert [n[0] for n in names] == ["Business", "Starter", "Team"]
    assert all(count == 1 for _, _, count in names)
    assert all(p.slug != "premium-support" for p in packages)


def test_packages_public_filters_by_currency(catalog):
    catalog.starter.prices.filter(currency="EUR").delete()
    assert {p.slug for p in packages_public(currency="EUR")} == {"team", "business"}


def test_audit_for_customer_newest_first(db):
    customer = CustomerFactory()
    actor = UserFactory()
    audit_record(customer=customer, action="a.first", actor=actor)
    audit_record(customer=customer, action="a.second", actor=actor)
    audit_record(customer=CustomerFactory(), action="other")
    assert [e.action for e in audit_for_customer(customer=customer)] == ["a.second", "a.first"]


def test_audit_for_customer_in_the_order_things_happened(db):
    from subscriptions.services.audit import audit_occurred_at

    customer = CustomerFactory()
    audit_record(customer=customer, action="seats.changed")
    # a bank transfer from last month, entered now; and a replayed run, recorded inside audit_occurred_at
    audit_record(customer=customer, action="payment.recorded", occurred_at=utc(2026, 10, 13))
    with audit_occurred_at(utc(2026, 10, 1)):
        audit_record(customer=customer, action="subscription.renewed")
        audit_record(customer=customer, action="invoice.open", occurred_at=utc(2026, 10, 2))  # the call wins
    audit_record(customer=customer, action="after.the.block")  # back to now
    events = audit_for_customer(customer=customer)
    assert [e.action for e in events] == [
        "after.the.block",
        "seats.changed",
        "payment.recorded",
        "invoice.open",
        "subscription.renewed",
    ]
    payment = events[2]
    assert payment.occurred_at == utc(2026, 10, 13) and payment.recorded_later
    assert not events[0].recorded_later


def test_audit_rows_built_directly_inside_audit_occurred_at_are_dated_too(db):
    # Bulk inserts (the batch renewal) build AuditEvent rows without audit_record: the field's default dates them.
    from subscriptions.models import AuditEvent
    from subscriptions.services.audit import audit_occurred_at

    customer = CustomerFactory()
    with audit_occurred_at(utc(2026, 9, 1, 1)):
        AuditEvent.objects.bulk_create([AuditEvent(customer=customer, action="subscription.renewed")])
    AuditEvent.objects.bulk_create([AuditEvent(customer=customer, action="later")])
    renewed, later = AuditEvent.objects.get(action="subscription.renewed"), AuditEvent.objects.get(action="later")
    assert renewed.occurred_at == utc(2026, 9, 1, 1)
    assert timedelta(0) <= later.created_at - later.occurred_at < timedelta(seconds=5)  # now, as it is recorded
