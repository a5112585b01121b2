from datetime import datetime

import pytest

from subscriptions.exceptions import (
    IdempotencyKeyReused,
    InvalidSeatCount,
    NoChange,
    SeatsAboveMaximum,
    SeatsBelowAssigned,
    SeatsBelowCommitment,
    SeatsBelowMinimum,
    StalePreview,
    SubscriptionNotChangeable,
)
from subscriptions.models import (
    AuditEvent,
    DowngradeTiming,
    ScheduledChange,
    SeatLedgerEntry,
    SubscriptionChange,
    SubscriptionStatus,
)
from subscriptions.services.changes import (
    subscription_change_seats_apply,
    subscription_change_seats_preview,
)
from tests.factories import CustomerFactory, SeatAssignmentFactory, SubscriptionFactory, UserFactory, utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]

NOV_12 = utc(2026, 11, 12, 15, 30)
DEC_1 = utc(2026, 12, 1)


def _written_state(subscription):
    subscription.refresh_from_db()
    return (
        subscription.seats,
        subscription.version,
        SubscriptionChange.objects.count(),
        ScheduledChange.objects.count(),
        SeatLedgerEntry.objects.count(),
        AuditEvent.objects.count(),
    )


def test_subscription_change_seats_preview_prorates_an_increase(subscription):
    # given Team with 10 seats (5 included, 10.00 each above), period 1 Nov – 1 Dec (30 days)
    # when the customer previews 12 seats on 12 Nov (19 days left)
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    # then one prorated line: 2 × 10.00 × 19/30 = 12.666… → 12.67
    assert preview.immediate is True
    assert preview.effective_at == NOV_12
    assert preview.currency == "USD"
    assert preview.version == subscription.version
    [line] = preview.lines
    assert line.description == "Team — 2 additional seats, Nov 12\u2009–\u2009Dec 1, 2026 (prorated)"
    assert (line.quantity, line.unit_amount_minor, line.amount_minor, line.proration) == (2, 1_000, 1_267, True)
    assert (line.sku_code, line.tax_category) == ("SEAT-STD-M", "saas")
    assert (line.period_start, line.period_end) == (NOV_12, DEC_1)
    assert preview.amount_due_now_minor == 1_267
    assert preview.current_recurring_amount_minor == 15_000
    assert preview.next_recurring_amount_minor == 17_000  # 100.00 + 7 × 10.00


def test_subscription_change_seats_preview_writes_nothing(subscription):
    before = _written_state(subscription)
    subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    assert _written_state(subscription) == before


def test_subscription_change_seats_apply_produces_what_the_preview_showed(subscription):
    owner = UserFactory()
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    change = subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=12, expected_version=preview.version, actor=owner, at=NOV_12
    )
    subscription.refresh_from_db()
    assert subscription.seats == 12
    assert subscription.version == preview.version + 1
    assert change.result == preview.to_dict()
    assert change.amount_due_now_minor == 1_267
    assert change.kind == SubscriptionChange.Kind.SEATS
    assert change.effective_at == NOV_12
    ledger = SeatLedgerEntry.objects.get(subscription=subscription)
    assert (ledger.seats_from, ledger.seats_to, ledger.actor, ledger.effective_at) == (10, 12, owner, NOV_12)
    event = AuditEvent.objects.get(action="subscription.seats_changed")
    assert event.actor == owner
    assert event.before["seats"] == 10 and event.after["seats"] == 12
    assert event.customer == subscription.customer


def test_subscription_change_seats_increase_within_included_seats_costs_nothing(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=2)
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=5, at=NOV_12)
    assert preview.lines == ()
    assert preview.amount_due_now_minor == 0
    assert preview.next_recurring_amount_minor == 10_000


def test_subscription_change_seats_writes_dates_as_the_customer_s_country_does(catalog):
    # given the same Team subscription for a customer in Germany and one in the United States
    germany = SubscriptionFactory(customer=CustomerFactory(country="DE"), package=catalog.team, seats=10)
    us = SubscriptionFactory(customer=CustomerFactory(country="US"), package=catalog.team, seats=10)
    # when each previews 12 seats (a prorated line) and 7 seats (a decrease at the period end) on 12 Nov
    [de_line] = subscription_change_seats_preview(subscription_id=germany.pk, seats=12, at=NOV_12).lines
    [us_line] = subscription_change_seats_preview(subscription_id=us.pk, seats=12, at=NOV_12).lines
    de_down = subscription_change_seats_preview(subscription_id=germany.pk, seats=7, at=NOV_12)
    us_down = subscription_change_seats_preview(subscription_id=us.pk, seats=7, at=NOV_12)
    # then the line description and the summary write the period and the day as each country does (Babel/CLDR)
    assert de_line.description == "Team — 2 additional seats, 12 Nov\u2009–\u20091 Dec 2026 (prorated)"
    assert us_line.description == "Team — 2 additional seats, Nov 12\u2009–\u2009Dec 1, 2026 (prorated)"
    assert de_down.summary == "Change from 10 to 7 seats on 1 Dec 2026"
    assert us_down.summary == "Change from 10 to 7 seats on Dec 1, 2026"


def test_subscription_change_seats_decrease_is_scheduled_for_period_end_without_refund(subscription):
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=7, at=NOV_12)
    assert preview.immediate is False
    assert preview.effective_at == DEC_1
    assert preview.lines == ()
    assert preview.amount_due_now_minor == 0
    assert preview.next_recurring_amount_minor == 12_000
    assert preview.summary == "Change from 10 to 7 seats on Dec 1, 2026"
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=7, expected_version=preview.version, actor=None, at=NOV_12
    )
    subscription.refresh_from_db()
    assert subscription.seats == 10  # still 10 until the period ends
    scheduled = ScheduledChange.objects.get(subscription=subscription)
    assert (scheduled.kind, scheduled.payload["seats"], scheduled.effective_at) == ("seats", 7, DEC_1)
    assert not SeatLedgerEntry.objects.exists()


def test_subscription_change_seats_decrease_is_immediate_with_credit_when_package_says_so(catalog):
    catalog.team.downgrade_timing = DowngradeTiming.IMMEDIATE
    catalog.team.save()
    subscription = SubscriptionFactory(package=catalog.team, seats=10)
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=8, at=NOV_12)
    assert preview.immediate is True
    [line] = preview.lines
    assert line.amount_minor == -1_267
    assert preview.amount_due_now_minor == -1_267


def test_subscription_change_seats_new_change_replaces_a_scheduled_decrease(subscription):
    first = subscription_change_seats_preview(subscription_id=subscription.pk, seats=7, at=NOV_12)
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=7, expected_version=first.version, actor=None, at=NOV_12
    )
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    assert preview.notes == ("This replaces your scheduled change to 7 seats.",)
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=12, expected_version=preview.version, actor=None, at=NOV_12
    )
    assert ScheduledChange.objects.get().canceled_at == NOV_12


def test_subscription_change_seats_keeping_current_count_cancels_scheduled_decrease(subscription):
    first = subscription_change_seats_preview(subscription_id=subscription.pk, seats=7, at=NOV_12)
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=7, expected_version=first.version, actor=None, at=NOV_12
    )
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=10, at=NOV_12)
    assert preview.lines == () and preview.next_recurring_amount_minor == 15_000
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=10, expected_version=preview.version, actor=None, at=NOV_12
    )
    assert ScheduledChange.objects.get().canceled_at is not None


def test_subscription_change_seats_refuses_going_below_assigned_seats(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=10)
    for _ in range(8):
        SeatAssignmentFactory(subscription=subscription)
    with pytest.raises(SeatsBelowAssigned) as caught:
        subscription_change_seats_preview(subscription_id=subscription.pk, seats=6, at=NOV_12)
    assert caught.value.message == "8 people hold seats; unassign 2 before going down to 6"
    assert (caught.value.code, caught.value.field) == ("seats_below_assigned", "seats")


@pytest.mark.parametrize(
    ("seats", "error", "message"),
    [
        (-1, InvalidSeatCount, "The number of seats cannot be negative."),
        ("12", InvalidSeatCount, "Enter a whole number of seats."),
        (12.5, InvalidSeatCount, "Enter a whole number of seats."),
        (None, InvalidSeatCount, "Enter a whole number of seats."),
        (True, InvalidSeatCount, "Enter a whole number of seats."),
        (0, SeatsBelowMinimum, "Team needs at least 1 seat."),
        (101, SeatsAboveMaximum, "Team allows at most 100 seats."),
        (10, NoChange, "You already have 10 seats."),
    ],
)
def test_subscription_change_seats_refuses_bad_input_and_writes_nothing(subscription, seats, error, message):
    before = _written_state(subscription)
    with pytest.raises(error) as caught:
        subscription_change_seats_apply(
            subscription_id=subscription.pk, seats=seats, expected_version=subscription.version, actor=None, at=NOV_12
        )
    assert caught.value.message == message
    assert _written_state(subscription) == before


def test_subscription_change_seats_refuses_annual_commitment_decrease_mid_term(catalog):
    catalog.team.downgrade_timing = DowngradeTiming.IMMEDIATE  # decreases would take effect mid-term
    catalog.team.save()
    subscription = SubscriptionFactory(package=catalog.team, interval="year", seats=20)
    assert subscription.committed_seats == 20
    with pytest.raises(SeatsBelowCommitment) as caught:
        subscription_change_seats_preview(subscription_id=subscription.pk, seats=15, at=NOV_12)
    assert "commits to 20 seats until Nov 1, 2027" in caught.value.message
    # increases are fine
    assert subscription_change_seats_preview(subscription_id=subscription.pk, seats=25, at=NOV_12).immediate


@pytest.mark.parametrize("status", [SubscriptionStatus.CANCELED, SubscriptionStatus.ENDED])
def test_subscription_change_seats_refuses_canceled_or_ended_subscription(catalog, status):
    subscription = SubscriptionFactory(package=catalog.team, status=status)
    with pytest.raises(SubscriptionNotChangeable) as caught:
        subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    assert "can no longer be changed" in caught.value.message


def test_subscription_change_seats_refuses_stale_version_and_writes_nothing(subscription):
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=11, expected_version=preview.version, actor=None, at=NOV_12
    )
    before = _written_state(subscription)
    with pytest.raises(StalePreview) as caught:
        subscription_change_seats_apply(
            subscription_id=subscription.pk, seats=12, expected_version=preview.version, actor=None, at=NOV_12
        )
    assert caught.value.message.startswith("The subscription changed since your preview")
    assert caught.value.code == "stale_preview"
    assert _written_state(subscription) == before


def test_subscription_change_seats_refuses_when_amount_due_changed_since_preview(subscription):
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    with pytest.raises(StalePreview):
        subscription_change_seats_apply(
            subscription_id=subscription.pk,
            seats=12,
            expected_version=preview.version,
            expected_amount_due_minor=preview.amount_due_now_minor,
            actor=None,
            at=utc(2026, 11, 13, 0, 1),  # a day later: 18 days left, not 19
        )


def test_subscription_change_seats_same_idempotency_key_changes_once(subscription):
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    kwargs = {"subscription_id": subscription.pk, "seats": 12, "expected_version": preview.version, "actor": None}
    first = subscription_change_seats_apply(**kwargs, idempotency_key="abc", at=NOV_12)
    again = subscription_change_seats_apply(**kwargs, idempotency_key="abc", at=NOV_12)
    assert again.pk == first.pk
    subscription.refresh_from_db()
    assert (subscription.seats, subscription.version) == (12, preview.version + 1)
    assert SeatLedgerEntry.objects.count() == 1
    assert SubscriptionChange.objects.count() == 1


def test_subscription_change_seats_idempotency_key_of_another_kind_is_refused(subscription):
    from subscriptions.services.changes import subscription_cancel_apply

    subscription_cancel_apply(
        subscription_id=subscription.pk, expected_version=1, idempotency_key="k1", actor=None, at=NOV_12
    )
    with pytest.raises(IdempotencyKeyReused):
        subscription_change_seats_apply(
            subscription_id=subscription.pk, seats=12, expected_version=2, idempotency_key="k1", actor=None, at=NOV_12
        )


def test_subscription_change_seats_during_trial_charges_nothing(catalog):
    subscription = SubscriptionFactory(package=catalog.team, status=SubscriptionStatus.TRIALING, seats=10)
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=15, at=NOV_12)
    assert preview.immediate and preview.lines == () and preview.amount_due_now_minor == 0
    assert preview.next_recurring_amount_minor == 20_000


def test_subscription_change_seats_uses_the_snapshotted_price_not_the_catalog(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=10)
    price = subscription.price
    price.is_active = False
    price.save()
    catalog.team.prices.create(currency="USD", interval="month", flat_amount_minor=99_999, seat_amount_minor=9_999)
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    assert preview.lines[0].unit_amount_minor == 1_000


def test_subscription_change_seats_preview_in_euros_for_euro_customer(catalog):
    subscription = SubscriptionFactory(customer=CustomerFactory(currency="EUR", country="DE"), package=catalog.team)
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    assert preview.currency == "EUR"


def test_subscription_change_seats_to_dict_is_json_ready(subscription):
    import json

    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, at=NOV_12)
    data = json.loads(json.dumps(preview.to_dict()))
    assert data["lines"][0]["amount_minor"] == 1_267
    assert datetime.fromisoformat(data["effective_at"]) == NOV_12


def test_subscription_change_seats_annual_decrease_is_allowed_at_term_end(catalog):
    subscription = SubscriptionFactory(package=catalog.team, interval="year", seats=20)
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=15, at=NOV_12)
    assert not preview.immediate and preview.effective_at == utc(2027, 11, 1)


def test_subscription_change_seats_annual_increase_joins_the_commitment(catalog):
    subscription = SubscriptionFactory(package=catalog.team, interval="year", seats=20)
    subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=25, expected_version=1, actor=None, at=NOV_12
    )
    subscription.refresh_from_db()
    assert subscription.committed_seats == 25


def test_subscription_change_seats_after_scheduled_downgrade_wins_at_renewal(subscription, catalog):
    from subscriptions.services.changes import subscription_change_package_apply
    from subscriptions.services.lifecycle import subscription_renew

    subscription_change_package_apply(
        subscription_id=subscription.pk, package_slug="starter", seats=6, expected_version=1, actor=None, at=NOV_12
    )
    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=9, at=NOV_12)
    assert preview.next_recurring_amount_minor == 5_000 + 6 * 500  # Starter with 9 seats (3 included)
    subscription_change_seats_apply(subscription_id=subscription.pk, seats=9, expected_version=2, actor=None, at=NOV_12)
    result = subscription_renew(subscription_id=subscription.pk, as_of=DEC_1)
    assert result.periods[0].seats == 9
    assert result.periods[0].amount_minor == preview.next_recurring_amount_minor
