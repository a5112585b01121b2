"""subscriptions.bulk writes rows exactly as the ORM would (on PostgreSQL through json_populate_recordset, elsewhere
through bulk_create/executemany): awkward text, JSON, NULLs, aware datetimes and auto_now fields survive the trip."""

import pytest
from django.utils import timezone

from subscriptions import bulk
from subscriptions.models import ActorKind, AuditEvent, SeatLedgerEntry, Subscription
from tests.factories import CustomerFactory, SubscriptionFactory, UserFactory, utc

pytestmark = pytest.mark.django_db

AWKWARD = "Acme “Ünïcode” — 50% off, {braces}, [brackets], \"quotes\", 'apostrophes', back\\slash, tab\t, new\nline"


def test_bulk_insert_round_trips_text_json_nulls_and_returns_primary_keys():
    customer = CustomerFactory()
    actor = UserFactory()
    before = timezone.now()
    rows = [
        AuditEvent(
            customer=customer,
            actor=actor if n % 2 else None,
            actor_kind=ActorKind.SYSTEM,
            action="subscription.renewed",
            object_type="subscription",
            object_id=str(n),
            summary=AWKWARD,
            before={"version": n, "nested": {"list": [1, None, "x"], "flag": True}},
            after={"periods": [["2026-11-01T00:00:00+00:00", "2026-12-01T00:00:00+00:00"]], "text": AWKWARD},
            reason="" if n else AWKWARD,
        )
        for n in range(3)
    ]
    bulk.bulk_insert(AuditEvent, rows, returning=True)
    assert all(row.pk for row in rows)
    for row in rows:
        stored = AuditEvent.objects.get(pk=row.pk)
        assert (stored.customer_id, stored.actor_id, stored.summary, stored.before, stored.after, stored.reason) == (
            row.customer_id,
            row.actor_id,
            row.summary,
            row.before,
            row.after,
            row.reason,
        )
        assert stored.created_at >= before  # auto_now_add, as save() would set it


def test_bulk_insert_keeps_aware_datetimes():
    subscription = SubscriptionFactory()
    at = utc(2026, 12, 1, 23, 59, 59, 123456)
    bulk.bulk_insert(
        SeatLedgerEntry,
        [SeatLedgerEntry(subscription=subscription, seats_from=10, seats_to=8, reason=AWKWARD, effective_at=at)],
    )
    entry = SeatLedgerEntry.objects.get()
    assert (entry.effective_at, entry.reason, entry.actor_id) == (at, AWKWARD, None)


def test_bulk_update_writes_only_the_named_fields_and_auto_now():
    first, second = SubscriptionFactory(seats=10), SubscriptionFactory(seats=20)
    Subscription.objects.update(updated_at=utc(2020, 1, 1))
    first.current_period_start, first.current_period_end, first.version = utc(2026, 12, 1), utc(2027, 1, 1), 7
    second.current_period_start, second.current_period_end, second.version = utc(2027, 1, 1), utc(2027, 2, 1), 9
    first.seats = 99  # not named: must not be written
    bulk.bulk_update(Subscription, [first, second], ["current_period_start", "current_period_end", "version"])
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.current_period_start, first.current_period_end, first.version, first.seats) == (
        utc(2026, 12, 1),
        utc(2027, 1, 1),
        7,
        10,
    )
    assert (second.current_period_start, second.version, second.seats) == (utc(2027, 1, 1), 9, 20)
    assert first.updated_at > utc(2020, 1, 1) and second.updated_at > utc(2020, 1, 1)


def test_bulk_helpers_do_nothing_for_no_rows(django_assert_num_queries):
    with django_assert_num_queries(0):
        bulk.bulk_insert(AuditEvent, [], returning=True)
        bulk.bulk_update(Subscription, [], ["version"])
