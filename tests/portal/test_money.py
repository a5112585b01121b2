"""Money formatting for the customer's locale."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.money import format_money


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
        (1_999, "SEK", "XX", "kr\u00a019.99"),
    ],
)
def test_format_money_writes_amounts_the_way_the_locale_does(amount, currency, country, expected):
    assert format_money(amount, currency, country) == expected


def test_format_money_blank_for_no_amount():
    assert format_money(None, "USD") == ""


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["US", "DE", "FR", "CH"]))
def test_format_money_round_trips_to_the_exact_minor_amount(amount, country):
    text = format_money(amount, "EUR", country)
    digits = "".join(ch for ch in text if ch.isdigit())
    assert int(digits) == abs(amount)
    assert text.startswith("-") == (amount < 0)
    assert Decimal(digits) / 100 == abs(Decimal(amount)) / 100
