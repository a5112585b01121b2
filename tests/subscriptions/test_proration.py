from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subscriptions.periods import period_end
from subscriptions.services.proration import (
    days_between,
    prorate,
    prorate_for_period,
    proration_days,
    proration_factor,
)
from tests.factories import utc

NOV_1, DEC_1 = utc(2026, 11, 1), utc(2026, 12, 1)

amounts = st.integers(min_value=0, max_value=10**12)
starts = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(hour=0, minute=0, second=0, microsecond=0)
)
intervals = st.sampled_from(["month", "year"])


def _half_up(value: Fraction) -> int:
    # Reference rounding on exact rationals: half a unit rounds away from zero.
    sign = -1 if value < 0 else 1
    value = abs(value)
    whole = value.numerator // value.denominator
    return sign * (whole + (1 if value - whole >= Fraction(1, 2) else 0))


def test_proration_factor_counts_change_day_inclusive_to_period_end_exclusive():
    # 12 Nov .. 30 Nov inclusive is 19 of November's 30 days; the time of day does not matter.
    assert proration_days(at=utc(2026, 11, 12, 23, 59), period_start=NOV_1, period_end=DEC_1) == (19, 30)
    assert proration_factor(at=utc(2026, 11, 12), period_start=NOV_1, period_end=DEC_1) == Decimal(19) / Decimal(30)


def test_proration_factor_is_one_on_the_first_day_and_zero_at_the_end():
    assert proration_factor(at=NOV_1, period_start=NOV_1, period_end=DEC_1) == 1
    assert proration_factor(at=utc(2026, 11, 30, 23), period_start=NOV_1, period_end=DEC_1) == Decimal(1) / 30
    assert proration_factor(at=DEC_1, period_start=NOV_1, period_end=DEC_1) == 0
    assert proration_factor(at=utc(2026, 10, 1), period_start=NOV_1, period_end=DEC_1) == 1


def test_proration_factor_uses_utc_calendar_dates():
    # 23:30 on 11 Nov in New York is already 12 Nov in UTC.
    from zoneinfo import ZoneInfo

    late_evening_ny = datetime(2026, 11, 11, 23, 30, tzinfo=ZoneInfo("America/New_York"))
    assert proration_days(at=late_evening_ny, period_start=NOV_1, period_end=DEC_1) == (19, 30)


def test_proration_factor_refuses_naive_datetimes():
    with pytest.raises(ValueError):
        proration_factor(at=datetime(2026, 11, 12), period_start=NOV_1, period_end=DEC_1)


def test_prorate_rounds_half_up_once():
    # 2 seats × 10.00 × 19/30 = 12.666… → 12.67
    assert prorate(2_000, Decimal(19) / Decimal(30)) == 1_267
    # 15 × 1/30 = 0.5 exactly: a half rounds up, even though 1/30 is not exact in decimal.
    assert prorate(15, Decimal(1) / Decimal(30)) == 1
    assert prorate(-15, Decimal(1) / Decimal(30)) == -1
    assert prorate(1_000, Decimal("0.5")) == 500


def test_prorate_refuses_factors_outside_zero_one_and_float_amounts():
    with pytest.raises(ValueError):
        prorate(100, Decimal("1.01"))
    with pytest.raises(TypeError):
        prorate(10.5, Decimal("0.5"))


@given(amount=amounts, start=starts, interval=intervals, offset=st.integers(min_value=-40, max_value=400))
def test_proration_factor_is_within_zero_and_one(amount, start, interval, offset):
    end = period_end(start, interval)
    factor = proration_factor(at=start + timedelta(days=offset), period_start=start, period_end=end)
    assert 0 <= factor <= 1
    assert 0 <= prorate(amount, factor) <= amount


@given(amount=amounts, start=starts, interval=intervals, offset=st.integers(min_value=0, max_value=366))
def test_prorate_is_within_half_a_minor_unit_of_the_exact_value(amount, start, interval, offset):
    end = period_end(start, interval)
    at = start + timedelta(days=offset)
    remaining, total = proration_days(at=at, period_start=start, period_end=end)
    exact = Fraction(amount * remaining, total)
    charged = prorate_for_period(amount, at=at, period_start=start, period_end=end)
    assert abs(charged - exact) <= Fraction(1, 2)
    assert charged == _half_up(exact)  # and it is exactly the one ROUND_HALF_UP of the exact value


@given(
    start=starts,
    interval=intervals,
    prices=st.lists(st.integers(min_value=0, max_value=10**9), min_size=2, max_size=5),
    offsets=st.lists(st.integers(min_value=0, max_value=365), min_size=4, max_size=4),
)
def test_prorated_upgrades_over_a_split_period_never_exceed_the_final_full_price(start, interval, prices, offsets):
    # A customer pays the full price of the first package, then upgrades at several dates in the same period:
    # each upgrade credits the unused old package and charges the new one. What they paid for the period never
    # exceeds the full-period price of the package they end on.
    prices = sorted(prices)
    end = period_end(start, interval)
    total_days = days_between(start, end)
    dates = sorted(start + timedelta(days=o % total_days) for o in offsets[: len(prices) - 1])
    paid = prices[0]
    for old, new, at in zip(prices, prices[1:], dates, strict=False):
        factor = proration_factor(at=at, period_start=start, period_end=end)
        paid += prorate(new, factor) - prorate(old, factor)
    assert paid <= prices[-1]
    assert paid >= prices[0]


@given(
    start=starts,
    interval=intervals,
    seat_price=st.integers(min_value=0, max_value=10**8),
    offsets=st.lists(st.integers(min_value=0, max_value=365), min_size=1, max_size=6),
)
def test_prorated_seat_additions_never_exceed_full_period_price_of_those_seats(start, interval, seat_price, offsets):
    end = period_end(start, interval)
    total_days = days_between(start, end)
    charged = sum(
        prorate_for_period(seat_price, at=start + timedelta(days=o % total_days), period_start=start, period_end=end)
        for o in offsets
    )
    assert charged <= seat_price * len(offsets)


@given(amount=amounts, start=starts, interval=intervals, a=st.integers(0, 365), b=st.integers(0, 365))
def test_prorate_is_monotonic_later_changes_cost_no_more(amount, start, interval, a, b):
    end = period_end(start, interval)
    early, late = sorted((a, b))
    assert prorate_for_period(amount, at=start + timedelta(days=early), period_start=start, period_end=end) >= (
        prorate_for_period(amount, at=start + timedelta(days=late), period_start=start, period_end=end)
    )
