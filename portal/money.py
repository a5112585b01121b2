"""Money for people: integer minor units + currency, formatted the way the customer's locale writes it.

`format_money(123450, "USD")` → "$1,234.50"; `format_money(123450, "EUR", "DE")` → "1.234,50 €". The implementation
lives in `billing.money` (billing writes amounts into sentences customers read, and must not import the portal); the
portal's templates use it through `{% money %}`.
"""

from billing.money import format_money, minor_digits

__all__ = ["format_money", "minor_digits"]
