"""Amounts and dates for people, in one place for the whole project.

Amounts are stored as integers in the currency's minor unit plus a 3-letter currency (docs/billing-rules.md). This
module is the only one that turns them into decimals or text:

- `minor_to_major(1000, "OMR")` → `Decimal("1.000")` and `major_to_minor(Decimal("1.5"), "OMR")` → `1500`, with the
  number of minor digits taken from Babel's CLDR data (`get_currency_precision`), not from a hand-kept table;
- `format_money(123450, "EUR", "DE")` → "1.234,50 €" for a customer, through `babel.numbers.format_currency`;
- `format_money_staff(123450, "USD")` → "USD 1,234.50" for the back office (ISO code first, no locale guessing);
- `format_date(day, "DE")`, `format_period(start, end, "DE")` and `format_moment(when, "DE")` (day and time) for
  dates a customer reads, through `babel.dates` — also the dates written into invoice line descriptions and change
  previews, in the customer's locale at the time they are drafted.

Where a customer's locale is asked for, a Babel locale ("de_CH") or the customer's ISO country ("CH") may be passed.
The portal is written in English, so a country means English as written there (`en_CH`), falling back to `en_US` for a
country CLDR has no English locale for. It lives in `subscriptions` because that app imports nothing of ours and
both billing and the portal need it.
"""

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_interval
from babel.dates import format_time as babel_format_time
from babel.numbers import format_currency, get_currency_precision, get_currency_symbol

from subscriptions.clock import utc_date

DEFAULT_LOCALE = "en_US"
# The back office shows the ISO code before the number so amounts in different currencies cannot be confused.
STAFF_PATTERN = "¤¤ #,##0.00;¤¤ -#,##0.00"


def minor_digits(currency: str) -> int:
    """How many minor digits `currency` has (ISO 4217 via CLDR): JPY 0, EUR 2, OMR 3; 2 for a code CLDR lacks."""
    return get_currency_precision((currency or "").upper())


def minor_to_major(amount_minor: int, currency: str) -> Decimal:
    """Integer minor units → exact Decimal in major units, with the currency's digits (1000 OMR → 1.000)."""
    digits = minor_digits(currency)
    return Decimal(int(amount_minor)).scaleb(-digits).quantize(Decimal(1).scaleb(-digits))


def major_to_minor(amount: Decimal | int | str, currency: str) -> int:
    """Decimal major units → integer minor units, rounded half up once (1.2345 EUR → 123)."""
    digits = minor_digits(currency)
    return int(Decimal(amount).scaleb(digits).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@lru_cache(maxsize=512)
def _locale(value: str | None) -> Locale:
    text = (value or "").strip()
    if len(text) == 2 and text.isalpha():
        text = f"en_{text.upper()}"
    try:
        return Locale.parse(text or DEFAULT_LOCALE)
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE)


def customer_locale(value: str | Locale | None) -> Locale:
    """The Babel locale for a locale identifier or a customer's country ("DE" → en_DE); en_US when unknown."""
    return value if isinstance(value, Locale) else _locale(value)


def format_money(amount_minor: int | None, currency: str, locale: str | Locale | None = DEFAULT_LOCALE) -> str:
    """An amount as the customer's locale writes it: (123450, "USD") → "$1,234.50"; "" for no amount."""
    if amount_minor is None or amount_minor == "":
        return ""
    currency = (currency or "").upper()
    where = customer_locale(locale)
    text = format_currency(minor_to_major(amount_minor, currency), currency, locale=where)
    return _space_letters_from_digits(text, get_currency_symbol(currency, locale=where))


def _space_letters_from_digits(text: str, symbol: str) -> str:
    """CLDR's currency spacing, which Babel does not apply: a symbol of letters ("SEK", "CHF") touching a digit gets a
    no-break space between them ("SEK 19.99", not "SEK19.99"); "$" and "€" stay where the pattern puts them."""
    if not symbol or not symbol[0].isalpha() and not symbol[-1].isalpha():
        return text
    at = text.find(symbol)
    if at < 0:
        return text
    end = at + len(symbol)
    if symbol[-1].isalpha() and end < len(text) and text[end].isdigit():
        text = f"{text[:end]}\u00a0{text[end:]}"
    if symbol[0].isalpha() and at > 0 and text[at - 1].isdigit():
        text = f"{text[:at]}\u00a0{text[at:]}"
    return text


def format_money_staff(amount_minor: int | None, currency: str) -> str:
    """An amount for staff: "USD 1,234.50", "JPY 1,234", "OMR 1.000"; "" for no amount."""
    if amount_minor is None or amount_minor == "":
        return ""
    currency = (currency or "").upper()
    return format_currency(minor_to_major(amount_minor, currency), currency, STAFF_PATTERN, locale=DEFAULT_LOCALE)


def format_date(value: date | datetime, locale: str | Locale | None = DEFAULT_LOCALE, format: str = "medium") -> str:
    """A date as the customer's locale writes it: (2026-03-31, "US") → "Mar 31, 2026". A datetime gives its UTC date."""
    if isinstance(value, datetime):
        value = utc_date(value)
    return babel_format_date(value, format=format, locale=customer_locale(locale))


def format_period(start: date | datetime, end: date | datetime, locale: str | Locale | None = DEFAULT_LOCALE) -> str:
    """A billing period as the customer's locale writes a range of days (CLDR's interval formats):
    "Nov 12 – Dec 1, 2026" in the US, "12 Nov – 1 Dec 2026" in Germany. The end is the exclusive period end, which is
    the day the customer renews on. Datetimes give their UTC dates."""
    start, end = (utc_date(v) if isinstance(v, datetime) else v for v in (start, end))
    return format_interval(start, end, "yMMMd", locale=customer_locale(locale))


def format_moment(value: datetime, locale: str | Locale | None = DEFAULT_LOCALE) -> str:
    """A moment (UTC) as the customer's locale writes it, to the minute: "Mar 31, 2026, 2:05 PM" in the US,
    "31 Mar 2026, 14:05" in Germany."""
    where = customer_locale(locale)
    value = value.astimezone(UTC)
    return f"{format_date(value, where)}, {babel_format_time(value, format='short', locale=where)}"
