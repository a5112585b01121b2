"""Two threads changing the same subscription at once, on PostgreSQL (SQLite serialises writers, so it proves
nothing there). Each thread has its own database connection; the subscription row lock queues them."""

import threading

import pytest
from django.db import connection

from subscriptions.exceptions import SeatsExhausted, StalePreview
from subscriptions.models import Role, SeatAssignment, SeatLedgerEntry, SubscriptionChange
from subscriptions.services.changes import subscription_change_seats_apply, subscription_change_seats_preview
from subscriptions.services.seats import seat_assign
from tests.factories import MembershipFactory, SubscriptionFactory, utc

pytestmark = [
    pytest.mark.integration,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

NOV_12 = utc(2026, 11, 12, 12)


def _run_together(*targets):
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def runner(target):
        try:
            barrier.wait(timeout=10)
            target()
        except BaseException as error:  # reported to the main thread below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_subscription_change_seats_two_threads_at_once_lose_neither_change(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=10)
    outcomes: dict[str, int] = {}

    def add(name: str, extra: int):
        # A customer's confirm loop: preview, apply; on "changed since your preview", preview again and re-confirm.
        for _attempt in range(20):
            current = type(subscription).objects.get(pk=subscription.pk)
            preview = subscription_change_seats_preview(
                subscription_id=subscription.pk, seats=current.seats + extra, at=NOV_12
            )
            try:
                subscription_change_seats_apply(
                    subscription_id=subscription.pk,
                    seats=current.seats + extra,
                    expected_version=preview.version,
                    actor=None,
                    at=NOV_12,
                )
            except StalePreview:
                outcomes[f"{name}_stale"] = outcomes.get(f"{name}_stale", 0) + 1
                continue
            outcomes[name] = current.seats + extra
            return
        raise AssertionError("never applied")

    errors = _run_together(lambda: add("a", 2), lambda: add("b", 3))
    assert errors == []
    subscription.refresh_from_db()
    assert subscription.seats == 15  # both increases landed
    assert subscription.version == 3
    chain = list(SeatLedgerEntry.objects.filter(subscription=subscription).order_by("pk"))
    assert [(e.seats_from, e.seats_to) for e in chain] in ([(10, 12), (12, 15)], [(10, 13), (13, 15)])
    assert sum(change.amount_due_now_minor for change in SubscriptionChange.objects.all()) == sum(
        change.result["amount_due_now_minor"] for change in SubscriptionChange.objects.all()
    )


def test_subscription_change_seats_same_version_twice_at_once_applies_one_and_refuses_the_other(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=10)
    results: list[str] = []

    def apply(seats: int):
        try:
            subscription_change_seats_apply(
                subscription_id=subscription.pk, seats=seats, expected_version=1, actor=None, at=NOV_12
            )
            results.append(f"applied {seats}")
        except StalePreview:
            results.append("stale")

    assert _run_together(lambda: apply(12), lambda: apply(14)) == []
    assert sorted(results)[1] == "stale" and sorted(results)[0].startswith("applied")
    subscription.refresh_from_db()
    assert subscription.version == 2
    assert SubscriptionChange.objects.count() == 1


def test_seat_assign_two_threads_for_the_last_seat_only_one_wins(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=1)
    people = [MembershipFactory(customer=subscription.customer, role=Role.MEMBER).user for _ in range(2)]
    refused: list[BaseException] = []

    def assign(user_id):
        try:
            seat_assign(subscription_id=subscription.pk, user_id=user_id, actor=None)
        except SeatsExhausted as error:
            refused.append(error)

    assert _run_together(*(lambda uid=p.pk: assign(uid) for p in people)) == []
    assert SeatAssignment.objects.filter(subscription=subscription).count() == 1
    assert len(refused) == 1
