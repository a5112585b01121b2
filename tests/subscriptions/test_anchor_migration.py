"""subscriptions/0006 fills the billing anchor of existing subscriptions from their original start."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.clock import month_start

BEFORE = [("subscriptions", "0005_auditevent_occurred_at")]
AFTER = [("subscriptions", "0006_subscription_billing_anchor")]


@pytest.mark.django_db(transaction=True)
def test_migration_takes_the_anchor_from_the_original_start():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Customer = apps.get_model("subscriptions", "Customer")
    Package = apps.get_model("subscriptions", "Package")
    Price = apps.get_model("subscriptions", "Price")
    Subscription = apps.get_model("subscriptions", "Subscription")
    SeatLedgerEntry = apps.get_model("subscriptions", "SeatLedgerEntry")
    customer = Customer.objects.create(name="Old", country="US", currency="USD")
    package = Package.objects.create(slug="old-team", name="Team")
    price = Price.objects.create(
        package=package, currency="USD", interval="month", flat_amount_minor=100, seat_amount_minor=10
    )
    # a 31st-of-the-month sign-up whose periods drifted to the 28th under the old rule
    signed_up = month_start(-14) - timedelta(days=1)
    drifted_start = month_start(-1).replace(day=28)

    def subscription(**fields):
        values = {
            "customer": customer,
            "package": package,
            "price": price,
            "interval": "month",
            "currency": "USD",
            "flat_amount_minor": 100,
            "seat_amount_minor": 10,
            "seats": 3,
            "current_period_start": drifted_start,
            "current_period_end": drifted_start.replace(month=drifted_start.month % 12 + 1)
            if drifted_start.month < 12
            else drifted_start.replace(year=drifted_start.year + 1, month=1),
        }
        values.update(fields)
        return Subscription.objects.create(**values)

    drifted = subscription()
    SeatLedgerEntry.objects.create(
        subscription=drifted, seats_from=0, seats_to=3, reason="subscribed", effective_at=signed_up
    )
    restarted = subscription(
        current_period_start=month_start(-1) + timedelta(days=19, hours=9), current_period_end=month_start(1)
    )
    SeatLedgerEntry.objects.create(
        subscription=restarted, seats_from=0, seats_to=3, reason="subscribed", effective_at=signed_up
    )
    trialing = subscription(
        status="trialing", current_period_start=month_start(), current_period_end=month_start() + timedelta(days=14)
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    anchors = dict(apps.get_model("subscriptions", "Subscription").objects.values_list("pk", "billing_anchor"))
    assert anchors[drifted.pk] == signed_up  # the original start: the next renewal goes back to the month's end
    assert anchors[restarted.pk] == restarted.current_period_start  # not on the sign-up's schedule: a new term
    assert anchors[trialing.pk] == trialing.current_period_end  # paid periods start at the trial end
    # back to the latest schema, so what runs after the test (the event-schema check, the flush) finds every table
    latest = MigrationExecutor(connection)
    latest.migrate(latest.loader.graph.leaf_nodes())
