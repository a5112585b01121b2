"""subscription_renew_batch (the billing run's renewal path) must leave exactly what subscription_renew leaves when
called on each subscription in turn: the same results, periods and lines, row changes, audit rows, seat ledger,
scheduled changes, add-ons and queued reconciles."""

from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from subscriptions.models import (
    AuditEvent,
    ProvisioningRun,
    ScheduledChange,
    SeatLedgerEntry,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.services.changes import (
    subscription_addon_add_apply,
    subscription_addon_remove_apply,
    subscription_cancel_apply,
    subscription_change_package_apply,
    subscription_change_seats_apply,
)
from subscriptions.services.lifecycle import (
    subscription_cancel_now,
    subscription_mark_past_due,
    subscription_renew,
    subscription_renew_batch,
)
from tests.factories import CustomerFactory, SeatAssignmentFactory, SubscriptionFactory, UserFactory, utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]

NOV_12 = utc(2026, 11, 12, 15, 30)
AS_OF = utc(2027, 2, 1, 0, 5)  # three monthly boundaries: 1 Dec, 1 Jan, 1 Feb


def _every_kind_of_subscription(catalog) -> list[int]:
    owner = UserFactory()

    def team(**fields):
        return SubscriptionFactory(customer=CustomerFactory(), package=catalog.team, **fields)

    plain = team(seats=12)
    past_due = team()
    subscription_mark_past_due(subscription_id=past_due.pk, reason="card declined", at=NOV_12)
    with_addon = team()
    subscription_addon_add_apply(
        subscription_id=with_addon.pk, addon_slug="premium-support", expected_version=1, actor=owner, at=NOV_12
    )
    annual = team(interval="year", seats=20, current_period_start=utc(2026, 1, 15))  # due 15 Jan 2027
    Subscription.objects.filter(pk=annual.pk).update(seats=25)  # grew mid-term; renewal re-commits to 25
    behind = team(current_period_start=utc(2026, 9, 1))  # missed two months: five periods to catch up
    seat_decrease = team()
    subscription_change_seats_apply(
        subscription_id=seat_decrease.pk, seats=6, expected_version=1, actor=owner, at=NOV_12
    )
    SeatAssignmentFactory(subscription=seat_decrease)
    downgrade = team()
    subscription_change_package_apply(
        subscription_id=downgrade.pk, package_slug="starter", expected_version=1, actor=owner, at=NOV_12
    )
    addon_removed = team()
    subscription_addon_add_apply(
        subscription_id=addon_removed.pk, addon_slug="premium-support", expected_version=1, actor=owner, at=NOV_12
    )
    subscription_addon_remove_apply(
        subscription_id=addon_removed.pk, addon_slug="premium-support", expected_version=2, actor=owner, at=NOV_12
    )
    canceling = team()
    subscription_cancel_apply(
        subscription_id=canceling.pk, reason="Switching tools", expected_version=1, actor=owner, at=NOV_12
    )
    canceled_now = team()
    subscription_cancel_now(subscription_id=canceled_now.pk, actor=None, reason="fraud", at=NOV_12)
    trial = team(
        status=SubscriptionStatus.TRIALING,
        current_period_start=utc(2026, 11, 1),
        current_period_end=utc(2026, 11, 15),
        trial_end=utc(2026, 11, 15),
    )
    not_due = team(current_period_start=utc(2027, 1, 20))
    ended = team(status=SubscriptionStatus.ENDED)
    return [
        s.pk
        for s in (
            plain,
            past_due,
            with_addon,
            annual,
            behind,
            seat_decrease,
            downgrade,
            addon_removed,
            canceling,
            canceled_now,
            trial,
            not_due,
            ended,
        )
    ]


def _state() -> dict:
    """Everything a renewal may write, without generated ids and timestamps."""
    return {
        "subscriptions": list(
            Subscription.objects.order_by("pk").values(
                *[f.attname for f in Subscription._meta.concrete_fields if f.name not in ("created_at", "updated_at")]
            )
        ),
        "audit": sorted(
            AuditEvent.objects.values_list(
                "customer_id", "actor_id", "actor_kind", "action", "object_type", "object_id", "summary", "reason"
            ).order_by("pk"),
            key=repr,
        ),
        "audit_json": sorted((repr(e.before), repr(e.after)) for e in AuditEvent.objects.all()),
        "ledger": sorted(
            SeatLedgerEntry.objects.values_list(
                "subscription_id", "seats_from", "seats_to", "reason", "actor_id", "effective_at"
            ),
            key=repr,
        ),
        "scheduled": list(ScheduledChange.objects.order_by("pk").values_list("pk", "applied_at", "canceled_at")),
        "addons": sorted(
            SubscriptionAddon.objects.values_list(
                "subscription_id", "package_id", "price_id", "flat_amount_minor", "quantity", "started_at", "ended_at"
            ),
            key=repr,
        ),
        "reconciles": sorted(ProvisioningRun.objects.values_list("customer_id", "trigger", "outcome"), key=repr),
    }


def test_subscription_renew_batch_leaves_exactly_what_subscription_renew_leaves(catalog):
    # given every kind of subscription the billing run meets
    ids = _every_kind_of_subscription(catalog)
    with transaction.atomic():
        one_by_one = [r for r in (subscription_renew(subscription_id=i, as_of=AS_OF) for i in ids) if r is not None]
        expected = _state()
        transaction.set_rollback(True)
    before = _state()
    assert before != expected

    # when the batch renews them all at once
    batch = subscription_renew_batch(subscription_ids=ids, as_of=AS_OF)

    # then results and every written row are the same
    assert batch == one_by_one
    assert _state() == expected
    by_id = {r.subscription_id: r for r in batch}
    plain, past_due, with_addon, annual, behind, seat_decrease, downgrade, *_ = ids
    assert [len(by_id[i].periods) for i in (plain, past_due, with_addon, behind)] == [3, 3, 3, 5]
    assert by_id[past_due].status == "past_due"
    assert by_id[with_addon].periods[0].amount_minor == 15_000 + 3_000
    assert Subscription.objects.get(pk=annual).committed_seats == 25
    assert by_id[seat_decrease].periods[0].seats == 6 and by_id[downgrade].periods[0].package_slug == "starter"
    assert ids[-2] not in by_id and ids[-1] not in by_id  # not due, ended


def test_subscription_renew_batch_scheduled_changes_applied_and_canceled_ones_ended(catalog):
    ids = _every_kind_of_subscription(catalog)
    results = {r.subscription_id: r for r in subscription_renew_batch(subscription_ids=ids, as_of=AS_OF)}
    seat_decrease, downgrade, addon_removed, canceling, canceled_now, trial = ids[5:11]
    assert Subscription.objects.get(pk=seat_decrease).seats == 6
    assert Subscription.objects.get(pk=downgrade).package == catalog.starter
    assert SubscriptionAddon.objects.get(subscription_id=addon_removed).ended_at == utc(2026, 12, 1)
    assert not ScheduledChange.objects.filter(applied_at__isnull=True, canceled_at__isnull=True).exists()
    for canceled in (canceling, canceled_now):
        assert results[canceled].ended and results[canceled].periods == ()
        assert Subscription.objects.get(pk=canceled).status == SubscriptionStatus.ENDED
    assert results[trial].status == "active" and results[trial].periods[0].period_start == utc(2026, 11, 15)


def test_subscription_renew_batch_plain_renewals_write_in_bulk_and_queue_no_reconcile(catalog):
    plain = [SubscriptionFactory(customer=CustomerFactory(), package=catalog.team).pk for _ in range(6)]
    with CaptureQueriesContext(connection) as two:
        subscription_renew_batch(subscription_ids=plain[:2], as_of=AS_OF)
    with CaptureQueriesContext(connection) as four:
        subscription_renew_batch(subscription_ids=plain[2:], as_of=AS_OF)
    assert len(four) == len(two)  # a constant number of queries, however many subscriptions
    assert not ProvisioningRun.objects.exists()  # moving the period changes no entitlement
    assert AuditEvent.objects.filter(action="subscription.renewed").count() == 6


def test_subscription_renew_batch_is_idempotent(catalog):
    ids = _every_kind_of_subscription(catalog)
    subscription_renew_batch(subscription_ids=ids, as_of=AS_OF)
    after_first = _state()
    assert subscription_renew_batch(subscription_ids=ids, as_of=AS_OF) == []
    assert _state() == after_first


_KINDS = ("plain", "past_due", "addon", "annual", "seat_decrease", "downgrade", "canceling", "canceled_now", "trial")
_spec = st.tuples(
    st.sampled_from(_KINDS),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2026, 11, 30)),  # the period start, and so the anchor day
    st.integers(min_value=1, max_value=30),  # seats (a plain kind) or seats assigned (a seat decrease)
)


def _build(catalog, specs: list[tuple[str, date, int]]) -> list[int]:
    owner = UserFactory()
    ids = []
    for kind, start_day, number in specs:
        start = utc(start_day.year, start_day.month, start_day.day)
        fields = {"current_period_start": start} if kind in ("plain", "past_due", "annual") else {}
        if kind == "annual":
            fields["interval"] = "year"
        if kind == "trial":
            fields = {
                "status": SubscriptionStatus.TRIALING,
                "current_period_start": utc(2026, 11, 1),
                "current_period_end": start + timedelta(days=400),
                "trial_end": start + timedelta(days=400),
            }
        if kind in ("plain", "past_due", "annual"):
            fields["seats"] = max(number, 5)
        subscription = SubscriptionFactory(customer=CustomerFactory(), package=catalog.team, **fields)
        pk, apply = subscription.pk, {"expected_version": 1, "actor": owner, "at": NOV_12}
        if kind == "past_due":
            subscription_mark_past_due(subscription_id=pk, reason="card declined", at=NOV_12)
        elif kind == "addon":
            subscription_addon_add_apply(subscription_id=pk, addon_slug="premium-support", **apply)
        elif kind == "seat_decrease":
            subscription_change_seats_apply(subscription_id=pk, seats=6, **apply)
            for _ in range(number // 4):  # sometimes more members than the 6 seats: never drop below them
                SeatAssignmentFactory(subscription=subscription)
        elif kind == "downgrade":
            subscription_change_package_apply(subscription_id=pk, package_slug="starter", **apply)
        elif kind == "canceling":
            subscription_cancel_apply(subscription_id=pk, reason="Switching tools", **apply)
        elif kind == "canceled_now":
            subscription_cancel_now(subscription_id=pk, actor=None, reason="fraud", at=NOV_12)
        ids.append(pk)
    return ids


@settings(
    max_examples=10,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # shrinking rebuilds the database rows: minutes
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(_spec, min_size=1, max_size=6), days_after=st.integers(min_value=0, max_value=200))
def test_subscription_renew_batch_and_one_by_one_leave_the_same_rows_on_any_mix(catalog, specs, days_after):
    as_of = NOV_12 + timedelta(days=days_after)
    with transaction.atomic():
        # given a mix of subscriptions with varied anchors, seats, scheduled changes and statuses
        ids = _build(catalog, specs)
        with transaction.atomic():
            # when they are renewed one by one (then rolled back) ...
            one_by_one = [r for r in (subscription_renew(subscription_id=i, as_of=as_of) for i in ids) if r]
            expected = _state()
            transaction.set_rollback(True)
        # ... and by the batch
        batch = subscription_renew_batch(subscription_ids=ids, as_of=as_of)

        # then the results (periods, lines, status, version) and every row field (subscriptions' periods, seats,
        # status; audit rows, seat ledger, scheduled changes, add-ons, queued reconciles) are the same
        assert batch == one_by_one
        assert _state() == expected
        transaction.set_rollback(True)
