"""Formatting integer minor units for people. Arithmetic stays on integers/Decimal elsewhere."""

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 minor-unit exponents that are not 2.
EXPONENTS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "TND": 3}
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


def minor_to_decimal(amount_minor: int, currency: str) -> Decimal:
    exponent = EXPONENTS.get(currency.upper(), 2)
    return Decimal(amount_minor).scaleb(-exponent)


def format_minor(amount_minor: int, currency: str) -> str:
    """1234567, "USD" → "$12,345.67"; negative amounts as "−$5.00"."""
    exponent = EXPONENTS.get(currency.upper(), 2)
    value = minor_to_decimal(abs(amount_minor), currency)
    text = f"{value:,.{exponent}f}"
    symbol = SYMBOLS.get(currency.upper())
    text = f"{symbol}{text}" if symbol else f"{text} {currency.upper()}"
    return f"−{text}" if amount_minor < 0 else text


# --- in the customer's locale ----------------------------------------------------------------------------------------
# A small table instead of a locale library: Continuum sells in a handful of currencies to a handful of countries, and
# the rules that matter are the separators, where the symbol goes and how many minor digits a currency has. The portal
# formats every amount with this (`{% money %}`); billing uses it for sentences a customer reads (audit summaries).

# ISO 4217 exponent where it is not 2.
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": "CHF", "CAD": "CA$", "AUD": "A$", "SEK": "kr"}

# country -> (group separator, decimal separator, symbol after the number)
_EN = (",", ".", False)
_CONTINENTAL = (".", ",", True)
_SPACE = ("\u202f", ",", True)  # narrow no-break space, as fr/se write it
_SWISS = ("’", ".", False)
_LOCALES = {
    "US": _EN,
    "GB": _EN,
    "IE": _EN,
    "CA": _EN,
    "AU": _EN,
    "NZ": _EN,
    "JP": _EN,
    "DE": _CONTINENTAL,
    "AT": _CONTINENTAL,
    "NL": _CONTINENTAL,
    "IT": _CONTINENTAL,
    "ES": _CONTINENTAL,
    "BE": _CONTINENTAL,
    "DK": _CONTINENTAL,
    "FR": _SPACE,
    "SE": _SPACE,
    "FI": _SPACE,
    "NO": _SPACE,
    "PL": _SPACE,
    "CH": _SWISS,
}


def minor_digits(currency: str) -> int:
    return _MINOR_DIGITS.get(currency.upper(), 2)


def format_money(amount_minor: int | None, currency: str, country: str = "US") -> str:
    """`format_money(123450, "USD")` → "$1,234.50"; `format_money(123450, "EUR", "DE")` → "1.234,50 €"."""
    if amount_minor is None or amount_minor == "":
        return ""
    currency = (currency or "").upper()
    digits = minor_digits(currency)
    value = (Decimal(int(amount_minor)) / (Decimal(10) ** digits)).quantize(
        Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP
    )
    negative = value < 0
    whole, _, fraction = f"{abs(value):.{digits}f}".partition(".")
    group, decimal, symbol_after = _LOCALES.get((country or "US").upper(), _EN)
    grouped = ""
    while len(whole) > 3:
        grouped = group + whole[-3:] + grouped
        whole = whole[:-3]
    number = whole + grouped + (decimal + fraction if digits else "")
    symbol = _SYMBOLS.get(currency, currency)
    text = f"{number}\u00a0{symbol}" if symbol_after else f"{symbol}{number}"
    if not symbol_after and len(symbol) > 1 and symbol.isalpha():
        text = f"{symbol}\u00a0{number}"
    return f"-{text}" if negative else text
