"""Billing periods follow the billing anchor (docs/billing-rules.md, "Billing periods and the billing anchor").

The expected boundaries are computed here independently of `subscriptions/periods.py`: the anchor moved k months
on, on the anchor's day or the month's last day, at the anchor's time of day."""

import calendar
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from subscriptions.models import Package, Subscription
from subscriptions.periods import anchored_boundary, next_boundary, period_end
from subscriptions.services.lifecycle import subscription_renew, subscription_renew_batch
from subscriptions.services.proration import proration_factor
from subscriptions.services.subscriptions import subscription_create
from tests.factories import CustomerFactory, priced_package, utc

MONTHS = {"month": 1, "year": 12}

anchors = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2032, 12, 31, 23, 59), timezones=st.just(UTC)
).map(lambda d: d.replace(second=0, microsecond=0))
intervals = st.sampled_from(["month", "year"])
# Pure arithmetic, but the shared test machine can be slow: no deadline, no "generation is slow" health check.
pure = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def expected_boundary(anchor: datetime, interval: str, k: int) -> datetime:
    index = anchor.month - 1 + k * MONTHS[interval]
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return datetime(year, month, day, anchor.hour, anchor.minute, tzinfo=UTC)


def renewed_periods(anchor: datetime, interval: str, renewals: int) -> list[tuple[datetime, datetime]]:
    """What renewal does, period after period: [previous end, next anchored boundary after it)."""
    periods = [(anchor, period_end(anchor, interval))]
    for _ in range(renewals):
        start = periods[-1][1]
        periods.append((start, next_boundary(anchor, interval, start)))
    return periods


@pytest.mark.parametrize(
    ("anchor", "interval", "boundaries"),
    [
        (utc(2027, 1, 31), "month", [utc(2027, 2, 28), utc(2027, 3, 31), utc(2027, 4, 30), utc(2027, 5, 31)]),
        (utc(2028, 1, 31), "month", [utc(2028, 2, 29), utc(2028, 3, 31), utc(2028, 4, 30)]),
        (utc(2027, 1, 30), "month", [utc(2027, 2, 28), utc(2027, 3, 30), utc(2027, 4, 30)]),
        (utc(2028, 2, 29), "year", [utc(2029, 2, 28), utc(2030, 2, 28), utc(2031, 2, 28), utc(2032, 2, 29)]),
        (utc(2027, 3, 15, 14, 30), "month", [utc(2027, 4, 15, 14, 30), utc(2027, 5, 15, 14, 30)]),
    ],
)
def test_periods_worked_examples_of_the_documented_anchor_rule(anchor, interval, boundaries):
    ends = [end for _, end in renewed_periods(anchor, interval, len(boundaries) - 1)]
    assert ends == boundaries


@pure
@given(anchor=anchors, interval=intervals, renewals=st.integers(min_value=0, max_value=30))
def test_periods_every_boundary_is_the_anchor_rule_and_periods_touch(anchor, interval, renewals):
    periods = renewed_periods(anchor, interval, renewals)
    for k, (start, end) in enumerate(periods):
        assert start == expected_boundary(anchor, interval, k) == anchored_boundary(anchor, interval, k)
        assert end == expected_boundary(anchor, interval, k + 1)
        assert start < end
    for (_, end), (next_start, _) in zip(periods, periods[1:], strict=False):
        assert end == next_start  # no gap, no overlap


@pure
@given(anchor=anchors, interval=intervals, k=st.integers(min_value=0, max_value=30), data=st.data())
def test_periods_next_boundary_is_the_end_of_the_period_containing_any_instant(anchor, interval, k, data):
    start, end = expected_boundary(anchor, interval, k), expected_boundary(anchor, interval, k + 1)
    seconds = data.draw(st.integers(min_value=0, max_value=int((end - start).total_seconds()) - 1))
    assert next_boundary(anchor, interval, start + timedelta(seconds=seconds)) == end


@pure
@given(anchor=anchors, interval=intervals, renewals=st.integers(min_value=0, max_value=30), data=st.data())
def test_periods_proration_factor_at_any_instant_is_the_documented_share_of_days(anchor, interval, renewals, data):
    start, end = renewed_periods(anchor, interval, renewals)[-1]
    seconds = data.draw(st.integers(min_value=0, max_value=int((end - start).total_seconds()) - 1))
    at = start + timedelta(seconds=seconds)
    factor = proration_factor(at=at, period_start=start, period_end=end)
    # documented: (UTC days from the change date, inclusive, to the end, exclusive) ÷ (UTC days in the period)
    days_left = (end.date() - at.date()).days
    days = (end.date() - start.date()).days
    assert 0 <= factor <= 1
    assert abs(Fraction(factor) - Fraction(min(days_left, days), days)) < Fraction(1, 10**20)
    if at.date() == start.date():
        assert factor == 1


@pytest.mark.django_db
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(anchor=anchors, interval=intervals, renewals=st.integers(min_value=1, max_value=14))
def test_periods_single_and_batch_renewal_share_the_anchor_rule(anchor, interval, renewals):
    # given two identical subscriptions anchored at `anchor`
    package = Package.objects.filter(slug="team").first() or priced_package(slug="team")
    single, batch = (
        subscription_create(
            customer=CustomerFactory(), package=package, interval=interval, seats=5, start=anchor, actor=None
        )
        for _ in range(2)
    )
    as_of = expected_boundary(anchor, interval, renewals)
    # when one renews period by period on its own and the other catches up in one batch
    for k in range(1, renewals + 1):
        subscription_renew(subscription_id=single.pk, as_of=expected_boundary(anchor, interval, k))
    subscription_renew_batch(subscription_ids=[batch.pk], as_of=as_of)
    # then both sit in the same anchored period
    for subscription in Subscription.objects.filter(pk__in=[single.pk, batch.pk]):
        assert subscription.billing_anchor == anchor
        assert (subscription.current_period_start, subscription.current_period_end) == (
            expected_boundary(anchor, interval, renewals),
            expected_boundary(anchor, interval, renewals + 1),
        )
