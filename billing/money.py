"""Formatting integer minor units for people. Arithmetic stays on integers/Decimal elsewhere."""

from decimal import Decimal

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
