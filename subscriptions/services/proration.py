"""Proration, exactly as docs/billing-rules.md ("Proration") states it. Pure functions: no database, no clock.

factor = (days from the change date, inclusive, to the period end, exclusive) ÷ (days in the period), counting UTC
calendar dates. A prorated line is `prorate(amount_minor, factor)`: the amount times the factor, rounded once to the
currency's minor unit with ROUND_HALF_UP (a half minor unit rounds away from zero, so credits mirror charges).
"""

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

# The product amount × factor is computed exactly (60 digits hold any amount times a 28-digit factor); see prorate()
# for how the factor's own residue is removed before the one rounding.
_PRECISION = 60
_NOISE_QUANTUM = Decimal("1e-12")
ONE = Decimal(1)
ZERO = Decimal(0)


def utc_date(moment: datetime) -> date:
    """The UTC calendar date of an aware datetime (naive datetimes are refused: they have no date in UTC)."""
    if moment.tzinfo is None:
        raise ValueError("Proration needs aware datetimes.")
    return moment.astimezone(UTC).date()


def days_between(start: datetime, end: datetime) -> int:
    """Whole UTC calendar days from `start`'s date (inclusive) to `end`'s date (exclusive)."""
    return (utc_date(end) - utc_date(start)).days


def proration_days(*, at: datetime, period_start: datetime, period_end: datetime) -> tuple[int, int]:
    """(remaining days, days in the period). Remaining counts the change date itself; it is clamped to [0, total]."""
    total = days_between(period_start, period_end)
    if total <= 0:
        raise ValueError("A billing period must span at least one day.")
    remaining = days_between(at, period_end)
    return max(0, min(total, remaining)), total


def proration_factor(*, at: datetime, period_start: datetime, period_end: datetime) -> Decimal:
    """The share of the period [period_start, period_end) left on `at`'s UTC date, as a Decimal in [0, 1].

    A change on the period's first day gives 1; a change on or after the period end gives 0.
    """
    remaining, total = proration_days(at=at, period_start=period_start, period_end=period_end)
    if remaining == total:
        return ONE
    if remaining == 0:
        return ZERO
    # Default 28-digit context: the factor's residue (< 1e-28) times any amount below 1e15 stays below 1e-13.
    return Decimal(remaining) / Decimal(total)


def prorate(amount_minor: int, factor: Decimal) -> int:
    """`amount_minor × factor`, rounded once to a whole minor unit with ROUND_HALF_UP.

    A factor such as 19/30 cannot be written exactly as a Decimal; its last-digit residue could turn an exact half
    (e.g. 15 × 1/30 = 0.5) into 0.4999…, which would then round down. The product is therefore first snapped to
    12 decimal places (far below a minor unit, far above the residue) and only then rounded half-up to an integer.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amount_minor must be an integer number of minor units.")
    factor = Decimal(factor)
    if factor < 0 or factor > 1:
        raise ValueError(f"A proration factor lies in [0, 1], not {factor}.")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        product = (Decimal(amount_minor) * factor).quantize(_NOISE_QUANTUM, rounding=ROUND_HALF_EVEN)
        return int(product.quantize(ONE, rounding=ROUND_HALF_UP))


def prorate_for_period(amount_minor: int, *, at: datetime, period_start: datetime, period_end: datetime) -> int:
    """Shortcut: prorate `amount_minor` for what is left of [period_start, period_end) on `at`'s date."""
    return prorate(amount_minor, proration_factor(at=at, period_start=period_start, period_end=period_end))
