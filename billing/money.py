"""Kept import path: money formatting lives in `subscriptions.money` (Babel/CLDR); this re-exports it for billing."""

from subscriptions.money import format_money, minor_digits, minor_to_major


class _CurrencyDigits:
    """`EXPONENTS.get("OMR", 2)` → 3: the old table's interface, answered from CLDR."""

    def get(self, currency: str, default: int = 2) -> int:
        return minor_digits(currency)


EXPONENTS = _CurrencyDigits()

__all__ = ["EXPONENTS", "format_money", "minor_digits", "minor_to_major"]
