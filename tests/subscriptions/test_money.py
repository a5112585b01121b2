"""Money and dates for people (subscriptions.money): CLDR currency digits and the customer's locale."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel.numbers import list_currencies
from hypothesis import given
from hypothesis import strategies as st

from subscriptions.money import (
    format_date,
    format_moment,
    format_money,
    format_money_staff,
    format_period,
    major_to_minor,
    minor_digits,
    minor_to_major,
)

CURRENCIES = sorted(list_currencies())


@pytest.mark.parametrize(
    "amount,currency,country,expected",
    [
        (123_450, "USD", "US", "$1,234.50"),
        (123_450, "EUR", "DE", "1.234,50\u00a0€"),
        (123_450, "EUR", "FR", "1\u202f234,50\u00a0€"),
        (123_450, "EUR", "IE", "€1,234.50"),
        (5, "USD", "US", "$0.05"),
        (-250, "USD", "US", "-$2.50"),
        (0, "EUR", "DE", "0,00\u00a0€"),
        (1_234, "JPY", "JP", "¥1,234"),
        (100_000_000, "USD", "US", "$1,000,000.00"),
        (1_999, "CHF", "CH", "CHF\u00a019.99"),
        # An unknown country is written as en_US does; CLDR's en_US writes SEK with its code ("kr" was hand-kept).
        (1_999, "SEK", "XX", "SEK\u00a019.99"),
        (1_000, "OMR", "US", "OMR\u00a01.000"),
    ],
)
def test_format_money_writes_amounts_the_way_the_locale_does(amount, currency, country, expected):
    assert format_money(amount, currency, country) == expected


def test_format_money_blank_for_no_amount():
    assert format_money(None, "USD") == ""
    assert format_money_staff(None, "USD") == ""


@pytest.mark.parametrize(
    "amount,currency,expected",
    [
        (1_000, "JPY", "JPY 1,000"),
        (1_000, "EUR", "EUR 10.00"),
        (1_000, "OMR", "OMR 1.000"),
        (123_450, "USD", "USD 1,234.50"),
    ],
)
def test_format_money_staff_shows_the_code_and_the_currency_s_own_decimals(amount, currency, expected):
    assert format_money_staff(amount, currency) == expected


@pytest.mark.parametrize("currency,digits", [("JPY", 0), ("EUR", 2), ("OMR", 3)])
def test_minor_digits_come_from_cldr(currency, digits):
    assert minor_digits(currency) == digits
    assert minor_to_major(10**digits, currency) == Decimal(1)
    assert str(minor_to_major(1, currency)) == ("1" if digits == 0 else "0." + "0" * (digits - 1) + "1")


def test_major_to_minor_rounds_half_up_once():
    assert major_to_minor(Decimal("1.005"), "EUR") == 101
    assert major_to_minor(Decimal("1.0005"), "OMR") == 1001
    assert major_to_minor(Decimal("12.5"), "JPY") == 13


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(CURRENCIES))
def test_minor_major_round_trip_is_exact_for_every_currency(amount, currency):
    major = minor_to_major(amount, currency)
    assert major_to_minor(major, currency) == amount
    assert -major.as_tuple().exponent == minor_digits(currency)


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["US", "DE", "FR", "CH", "JP"]))
def test_format_money_keeps_every_minor_digit(amount, country):
    text = format_money(amount, "EUR", country)
    digits = "".join(ch for ch in text if ch.isdigit())
    assert int(digits) == abs(amount)
    assert ("-" in text) == (amount < 0)


def test_format_date_in_the_customer_s_locale():
    assert format_date(date(2026, 3, 31), "US") == "Mar 31, 2026"
    assert format_date(date(2026, 3, 31), "DE") == "31 Mar 2026"
    assert format_date(datetime(2026, 3, 31, 23, 30, tzinfo=UTC), "US") == "Mar 31, 2026"


def test_format_period_writes_a_range_of_days_as_the_customer_s_locale_does():
    # a pure formatter: fixed past days as input (nothing here reads the clock); the end is the exclusive period end
    # (the renewal day); CLDR puts thin spaces around the dash
    nov_12, dec_1 = datetime(2025, 11, 12, 15, 30, tzinfo=UTC), datetime(2025, 12, 1, tzinfo=UTC)
    assert format_period(nov_12, dec_1, "US") == "Nov 12\u2009–\u2009Dec 1, 2025"
    assert format_period(nov_12, dec_1, "DE") == "12 Nov\u2009–\u20091 Dec 2025"
    assert format_period(nov_12, dec_1, "GB") == "12 Nov\u2009–\u20091 Dec 2025"
    # a range over a new year writes both years; a datetime is read as its UTC day
    assert format_period(date(2024, 12, 1), date(2025, 1, 1), "US") == "Dec 1, 2024\u2009–\u2009Jan 1, 2025"
    late = datetime(2025, 11, 30, 23, 30, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))  # 1 Dec in Tokyo
    assert format_period(late, dec_1, "US") == "Nov 30\u2009–\u2009Dec 1, 2025"


@given(
    start=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    days=st.integers(min_value=1, max_value=400),
    country=st.sampled_from(["US", "DE", "GB", "CH", "FR"]),
)
def test_format_period_names_both_days_and_the_end_s_year_for_any_range(start, days, country):
    # month ends, leap days and new years included: the range is the start's and the end's own Babel dates' parts
    end = start + timedelta(days=days)
    text = format_period(start, end, country)
    assert "\u2013" in text
    assert str(end.year) in text.split("\u2013")[1]
    assert str(start.day) in text.split("\u2013")[0] and str(end.day) in text.split("\u2013")[1]
    if start.year != end.year:
        assert str(start.year) in text.split("\u2013")[0]


def test_format_moment_writes_day_and_time_in_the_customer_s_locale():
    at = datetime(2026, 3, 31, 14, 5, tzinfo=UTC)
    assert format_moment(at, "US") == "Mar 31, 2026, 2:05\u202fPM"
    assert format_moment(at, "DE") == "31 Mar 2026, 14:05"
