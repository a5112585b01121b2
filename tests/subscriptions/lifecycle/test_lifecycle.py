import pytest

from subscriptions.exceptions import InvalidTransition
from subscriptions.models import (
    SUBSCRIPTION_TRANSITIONS,
    AuditEvent,
    ScheduledChange,
    SeatLedgerEntry,
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
    subscription_restore,
    subscription_transition,
    subscriptions_due_for_renewal,
)
from tests.factories import SeatAssignmentFactory, SubscriptionFactory, UserFactory, utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]

NOV_12 = utc(2026, 11, 12, 15, 30)
DEC_1 = utc(2026, 12, 1)
JAN_1 = utc(2027, 1, 1)

ALL = list(SubscriptionStatus)
FORBIDDEN = [(a, b) for a in ALL for b in ALL if b not in SUBSCRIPTION_TRANSITIONS[a]]
ALLOWED = [(a, b) for a in ALL for b in ALL if b in SUBSCRIPTION_TRANSITIONS[a]]


@pytest.mark.parametrize(("from_status", "to_status"), FORBIDDEN)
def test_subscription_transition_refuses_every_forbidden_transition(catalog, from_status, to_status):
    subscription = SubscriptionFactory(package=catalog.team, status=from_status)
    with pytest.raises(InvalidTransition) as caught:
        subscription_transition(subscription_id=subscription.pk, to_status=to_status, actor=None, reason="test")
    assert "cannot become" in caught.value.message
    subscription.refresh_from_db()
    assert subscription.status == from_status and subscription.version == 1
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(("from_status", "to_status"), ALLOWED)
def test_subscription_transition_allows_table_transitions_and_audits(catalog, from_status, to_status):
    staff = UserFactory(is_staff=True)
    subscription = SubscriptionFactory(package=catalog.team, status=from_status)
    subscription_transition(subscription_id=subscription.pk, to_status=to_status, actor=staff, reason="because")
    subscription.refresh_from_db()
    assert subscription.status == to_status and subscription.version == 2
    event = AuditEvent.objects.get()
    assert (event.before, event.after, event.reason, event.actor_kind) == (
        {"status": from_status},
        {"status": to_status},
        "because",
        "staff",
    )


def test_subscription_transition_refuses_unknown_status(subscription):
    with pytest.raises(InvalidTransition):
        subscription_transition(subscription_id=subscription.pk, to_status="paused", actor=None, reason="")


def test_subscription_renew_does_nothing_before_period_end(subscription):
    assert subscription_renew(subscription_id=subscription.pk, as_of=NOV_12) is None
    subscription.refresh_from_db()
    assert subscription.version == 1


def test_subscription_renew_advances_period_and_returns_lines_to_invoice(subscription):
    result = subscription_renew(subscription_id=subscription.pk, as_of=utc(2026, 12, 1, 0, 5))
    [period] = result.periods
    assert (period.period_start, period.period_end) == (DEC_1, JAN_1)
    assert period.amount_minor == 15_000
    assert [line.description for line in period.lines] == [
        "Team plan (includes 5 seats), Dec 1, 2026\u2009–\u2009Jan 1, 2027",
        "Team — 5 additional seats, Dec 1, 2026\u2009–\u2009Jan 1, 2027",
    ]
    assert [(line.sku_code, line.amount_minor, line.proration) for line in period.lines] == [
        ("PLAT-BASE-M", 10_000, False),
        ("SEAT-STD-M", 5_000, False),
    ]
    subscription.refresh_from_db()
    assert (subscription.current_period_start, subscription.current_period_end) == (DEC_1, JAN_1)
    assert result.version == subscription.version == 2
    assert not result.ended and result.status == "active"


def test_subscription_renew_is_idempotent(subscription):
    as_of = utc(2026, 12, 1, 0, 5)
    assert subscription_renew(subscription_id=subscription.pk, as_of=as_of) is not None
    assert subscription_renew(subscription_id=subscription.pk, as_of=as_of) is None
    subscription.refresh_from_db()
    assert subscription.current_period_end == JAN_1 and subscription.version == 2


def test_subscription_renew_catches_up_several_periods(subscription):
    result = subscription_renew(subscription_id=subscription.pk, as_of=utc(2027, 2, 15))
    assert [(p.period_start, p.period_end) for p in result.periods] == [
        (DEC_1, JAN_1),
        (JAN_1, utc(2027, 2, 1)),
        (utc(2027, 2, 1), utc(2027, 3, 1)),
    ]


def test_subscription_renew_applies_scheduled_seat_decrease_and_downgrade(subscription, catalog):
    owner = UserFactory()
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=8, expected_version=1, actor=owner, at=NOV_12
    )
    subscription_change_package_apply(
        subscription_id=subscription.pk, package_slug="starter", expected_version=2, actor=owner, at=NOV_12
    )
    # the package change replaced the scheduled seat decrease
    assert ScheduledChange.objects.filter(canceled_at__isnull=True).count() == 1
    result = subscription_renew(subscription_id=subscription.pk, as_of=DEC_1)
    subscription.refresh_from_db()
    assert subscription.package == catalog.starter
    assert (subscription.flat_amount_minor, subscription.seat_amount_minor, subscription.seats) == (5_000, 500, 10)
    assert result.periods[0].package_slug == "starter"
    assert result.periods[0].amount_minor == 8_500
    assert len(result.applied_scheduled_change_ids) == 1
    assert ScheduledChange.objects.get(canceled_at__isnull=True).applied_at == DEC_1


def test_subscription_renew_applies_seat_decrease_never_below_assigned(subscription):
    owner = UserFactory()
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=6, expected_version=1, actor=owner, at=NOV_12
    )
    for _ in range(7):  # people were given seats after the decrease was scheduled
        SeatAssignmentFactory(subscription=subscription)
    result = subscription_renew(subscription_id=subscription.pk, as_of=DEC_1)
    subscription.refresh_from_db()
    assert subscription.seats == 7
    entry = SeatLedgerEntry.objects.get()
    assert (entry.seats_from, entry.seats_to, entry.effective_at, entry.actor) == (10, 7, DEC_1, owner)
    assert result.periods[0].seats == 7


def test_subscription_renew_ends_addon_scheduled_for_removal(subscription):
    subscription_addon_add_apply(
        subscription_id=subscription.pk, addon_slug="premium-support", expected_version=1, actor=None, at=NOV_12
    )
    first = subscription_renew(subscription_id=subscription.pk, as_of=DEC_1)
    assert first.periods[0].amount_minor == 18_000
    subscription_addon_remove_apply(
        subscription_id=subscription.pk,
        addon_slug="premium-support",
        expected_version=first.version,
        actor=None,
        at=utc(2026, 12, 5),
    )
    second = subscription_renew(subscription_id=subscription.pk, as_of=JAN_1)
    assert second.periods[0].amount_minor == 15_000
    assert SubscriptionAddon.objects.get().ended_at == JAN_1


def test_subscription_renew_ends_subscription_canceled_at_period_end(subscription):
    subscription_cancel_apply(
        subscription_id=subscription.pk, reason="Switching tools", expected_version=1, actor=None, at=NOV_12
    )
    result = subscription_renew(subscription_id=subscription.pk, as_of=utc(2026, 12, 2))
    assert result.ended and result.periods == () and result.status == "ended"
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ENDED
    assert subscription.canceled_at == DEC_1 and subscription.ended_at == DEC_1
    statuses = [e.after["status"] for e in AuditEvent.objects.filter(action="subscription.status_changed")]
    assert sorted(statuses) == ["canceled", "ended"]
    assert subscription_renew(subscription_id=subscription.pk, as_of=utc(2027, 6, 1)) is None


def test_subscription_renew_turns_trial_into_active_first_period(catalog):
    subscription = SubscriptionFactory(
        package=catalog.team,
        status=SubscriptionStatus.TRIALING,
        current_period_start=utc(2026, 11, 1),
        current_period_end=utc(2026, 11, 15),
        trial_end=utc(2026, 11, 15),
    )
    result = subscription_renew(subscription_id=subscription.pk, as_of=utc(2026, 11, 15, 1))
    assert result.status == "active"
    [period] = result.periods
    assert (period.period_start, period.period_end) == (utc(2026, 11, 15), utc(2026, 12, 15))


def test_subscription_renew_annual_term_recommits_to_current_seats(catalog):
    subscription = SubscriptionFactory(package=catalog.team, interval="year", seats=20)
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=25, expected_version=1, actor=None, at=NOV_12
    )
    subscription_renew(subscription_id=subscription.pk, as_of=utc(2027, 11, 1))
    subscription.refresh_from_db()
    assert subscription.committed_seats == 25


def test_subscription_cancel_now_then_renew_ends(subscription):
    change = subscription_cancel_now(subscription_id=subscription.pk, actor=None, reason="fraud", at=NOV_12)
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.CANCELED and subscription.canceled_at == NOV_12
    assert change.kind == "cancel" and change.amount_due_now_minor == 0
    result = subscription_renew(subscription_id=subscription.pk, as_of=DEC_1)
    assert result.ended and result.status == "ended"


def test_subscription_mark_past_due_and_restore_are_idempotent(subscription):
    subscription_mark_past_due(subscription_id=subscription.pk, reason="card declined")
    subscription_mark_past_due(subscription_id=subscription.pk, reason="card declined")
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE
    subscription_restore(subscription_id=subscription.pk, reason="paid")
    subscription_restore(subscription_id=subscription.pk, reason="paid")
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert AuditEvent.objects.filter(action="subscription.status_changed").count() == 2


def test_subscription_restore_refuses_ended_subscription(catalog):
    subscription = SubscriptionFactory(package=catalog.team, status=SubscriptionStatus.ENDED)
    with pytest.raises(InvalidTransition):
        subscription_restore(subscription_id=subscription.pk)


def test_subscriptions_due_for_renewal_lists_only_due_and_not_ended(catalog):
    due = SubscriptionFactory(package=catalog.team)
    SubscriptionFactory(package=catalog.team, status=SubscriptionStatus.ENDED)
    SubscriptionFactory(package=catalog.team, current_period_start=DEC_1)
    assert subscriptions_due_for_renewal(as_of=DEC_1) == [due.pk]
