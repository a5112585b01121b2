"""The billing calendar on whatever day the clock says (`make test-calendar` pins it to month ends, leap days and
the first minutes of a month; without it, the real today). Every date here is built from now (tests/clock.py)."""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from billing.models import Invoice, InvoiceKind
from billing.services.billing_run import billing_run
from billing.services.changes import change_apply, change_preview
from subscriptions import clock
from subscriptions.models import AuditEvent, Subscription
from subscriptions.services.subscriptions import subscription_create
from tests.billing.conftest import established
from tests.clock import day_start, month_start
from tests.factories import (
    BillingProfileFactory,
    CustomerFactory,
    MembershipFactory,
    TaxRateFactory,
    UserFactory,
    priced_package,
)
from tests.subscriptions.test_periods import expected_boundary

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return UserFactory(email="billing-staff@continuum.test", is_staff=True)


@pytest.fixture
def customer(staff):
    TaxRateFactory()
    customer = CustomerFactory(name="Acme", country="US", region="CA")
    BillingProfileFactory(customer=customer, billing_emails=["ap@acme.test"])
    established(customer, staff)
    return customer


@pytest.fixture
def owner(customer):
    return MembershipFactory(customer=customer, user=UserFactory(email="owner@acme.test")).user


def _renewals(subscription) -> int:
    return AuditEvent.objects.filter(action="subscription.renewed", object_id=str(subscription.pk)).count()


def _seat_change(subscription, owner, seats, key):
    preview = change_preview(subscription_id=subscription.pk, kind="seats", seats=seats)
    return preview, change_apply(
        subscription_id=subscription.pk,
        kind="seats",
        seats=seats,
        expected_version=preview.version,
        expected_amount_due_minor=preview.preview.amount_due_now_minor,
        idempotency_key=key,
        actor=owner,
    )


@pytest.mark.parametrize("run_first", [True, False], ids=["run-then-change", "change-then-run"])
def test_billing_run_at_00_10_on_the_1st_then_a_seat_change_succeeds_and_renews_once(
    customer, owner, time_machine, run_first
):
    # given a monthly subscription whose period ends at midnight on the 1st of next month
    start = month_start()
    subscription = subscription_create(
        customer=customer, package=priced_package(slug="team"), interval="month", seats=10, start=start, actor=owner
    )
    billing_run(as_of=start + timedelta(minutes=5))  # this period's invoice
    period_end, next_end = month_start(1), month_start(2)
    assert subscription.current_period_end == period_end

    # when the clock shows 00:10 on the 1st: the period is over, and the billing run and a seat change both arrive
    time_machine.move_to(period_end + timedelta(minutes=10), tick=True)
    if run_first:
        billing_run(as_of=clock.now())
    preview, billed = _seat_change(subscription, owner, 12, "calendar-12")
    if not run_first:
        billing_run(as_of=clock.now())

    # then the change applied at once to the new period, which was started exactly once
    subscription.refresh_from_db()
    assert subscription.seats == 12
    assert (subscription.current_period_start, subscription.current_period_end) == (period_end, next_end)
    assert _renewals(subscription) == 1
    regular = Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.REGULAR)
    assert list(regular.order_by("period_start").values_list("period_start", flat=True)) == [start, period_end]
    # a change on the period's first day costs the whole period for the two added seats
    assert preview.preview.amount_due_now_minor == 2 * 1_000
    assert billed.change.kind == "seats"


def test_seat_change_now_is_prorated_by_the_documented_rule(customer, owner):
    subscription = subscription_create(
        customer=customer,
        package=priced_package(slug="team"),
        interval="month",
        seats=10,
        start=month_start(),
        actor=owner,
    )
    preview, _ = _seat_change(subscription, owner, 12, "calendar-now")
    left = (subscription.current_period_end.date() - clock.today()).days
    days = (subscription.current_period_end.date() - subscription.current_period_start.date()).days
    expected = (Decimal(2 * 1_000) * left / days).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert 0 < preview.preview.amount_due_now_minor == int(expected) <= 2_000
    subscription.refresh_from_db()
    assert subscription.seats == 12


@pytest.mark.parametrize(("interval", "days_ago"), [("month", 400), ("year", 1100)])
def test_billing_run_today_catches_up_on_the_anchor_and_bills_each_period_once(customer, owner, interval, days_ago):
    # given a subscription anchored on the last day of a month, long ago (a month-end anchor shows any drift)
    anchor = day_start(-days_ago).replace(day=1) - timedelta(days=1)
    subscription = subscription_create(
        customer=customer, package=priced_package(slug="team"), interval=interval, seats=10, start=anchor, actor=owner
    )
    # when the billing run runs now, twice
    billing_run(as_of=clock.now())
    billing_run(as_of=clock.now())
    # then the subscription is in the anchored period that contains now, and every period is billed once
    subscription.refresh_from_db()
    now = clock.now()
    assert subscription.current_period_start <= now < subscription.current_period_end
    k = 0
    while expected_boundary(anchor, interval, k + 1) <= now:
        k += 1
    assert (subscription.current_period_start, subscription.current_period_end) == (
        expected_boundary(anchor, interval, k),
        expected_boundary(anchor, interval, k + 1),
    )
    periods = list(
        Invoice.objects.filter(subscription=subscription, kind=InvoiceKind.REGULAR)
        .order_by("period_start")
        .values_list("period_start", "period_end")
    )
    assert periods == [
        (expected_boundary(anchor, interval, i), expected_boundary(anchor, interval, i + 1)) for i in range(k + 1)
    ]
    assert Subscription.objects.get(pk=subscription.pk).billing_anchor == anchor


def test_billing_run_task_reads_a_date_or_a_naive_datetime_as_utc(customer, owner):
    from billing.tasks import billing_run_task

    # given a subscription whose period ended at midnight on the 1st of this month
    subscription = subscription_create(
        customer=customer,
        package=priced_package(slug="team"),
        interval="month",
        seats=10,
        start=month_start(-1),
        actor=owner,
    )
    # when the task gets today's date, then a datetime without an offset
    by_date = billing_run_task(as_of=clock.today().isoformat())
    naive = billing_run_task(as_of=clock.now().replace(tzinfo=None).isoformat())
    # then both are read as UTC: the first renews (at midnight UTC today), the second finds nothing left to do
    assert by_date["as_of"] == day_start().isoformat()
    assert (by_date["renewed"], naive["renewed"]) == (1, 0)
    subscription.refresh_from_db()
    assert subscription.current_period_start == month_start()


def test_billing_run_is_scheduled_at_a_fixed_minute_of_every_hour(settings):
    from celery.schedules import crontab

    schedule = settings.CELERY_BEAT_SCHEDULE["billing-run-hourly"]["schedule"]
    assert isinstance(schedule, crontab)
    assert schedule.minute == {settings.BILLING_RUN_MINUTE} and len(schedule.hour) == 24
