import pytest

from subscriptions.exceptions import InvalidSeatCount, PackageNotAvailable, SeatsAboveMaximum, SeatsBelowMinimum
from subscriptions.models import AuditEvent, SeatLedgerEntry, Subscription, SubscriptionStatus
from subscriptions.services.subscriptions import subscription_create
from tests.factories import CustomerFactory, utc


def test_subscription_create_snapshots_price_and_starts_ledger(catalog):
    customer = CustomerFactory(currency="EUR")
    subscription = subscription_create(
        customer=customer, package=catalog.team, interval="year", seats=12, start=utc(2026, 11, 1)
    )
    assert (subscription.currency, subscription.flat_amount_minor, subscription.seat_amount_minor) == (
        "EUR",
        100_000,
        10_000,
    )
    assert subscription.current_period_end == utc(2027, 11, 1)
    assert subscription.billing_anchor == utc(2026, 11, 1)  # every later boundary counts from the sign-up
    assert subscription.committed_seats == 12
    assert SeatLedgerEntry.objects.get().seats_to == 12
    assert AuditEvent.objects.get().action == "subscription.created"


def test_subscription_create_with_trial(catalog):
    catalog.team.trial_days = 14
    catalog.team.save()
    subscription = subscription_create(
        customer=CustomerFactory(), package=catalog.team, interval="month", seats=3, start=utc(2026, 11, 1), trial=True
    )
    assert subscription.status == SubscriptionStatus.TRIALING
    assert subscription.trial_end == subscription.current_period_end == utc(2026, 11, 15)
    assert subscription.billing_anchor == utc(2026, 11, 15)  # the paid periods start when the trial ends (Stripe)


@pytest.mark.parametrize(
    ("seats", "interval", "slug", "error", "message"),
    [
        ("3", "month", "team", InvalidSeatCount, "Enter a whole number of seats."),
        (-2, "month", "team", InvalidSeatCount, "The number of seats cannot be negative."),
        (5, "month", "business", SeatsBelowMinimum, "Business needs at least 10 seats."),
        (11, "month", "starter", SeatsAboveMaximum, "Starter allows at most 10 seats."),
        (3, "week", "team", PackageNotAvailable, "Choose monthly or annual billing, not “week”."),
        (
            3,
            "month",
            "premium-support",
            PackageNotAvailable,
            "Premium support is not offered with monthly billing in USD.",
        ),
    ],
)
def test_subscription_create_refuses_bad_input_and_writes_nothing(catalog, seats, interval, slug, error, message):
    package = {"team": catalog.team, "business": catalog.business, "starter": catalog.starter}.get(
        slug, catalog.premium
    )
    with pytest.raises(error) as caught:
        subscription_create(customer=CustomerFactory(), package=package, interval=interval, seats=seats)
    assert caught.value.message == message
    assert not Subscription.objects.exists() and not AuditEvent.objects.exists()
