"""Billing periods: half-open [start, end), aware datetimes in UTC, every boundary derived from the billing anchor.

The rule is Stripe's `billing_cycle_anchor` (docs/billing-rules.md, "Billing periods"): the n-th boundary of a
subscription is its anchor moved n intervals on, on the anchor's day of the month or, when that month is shorter,
on its last day — always counted from the anchor, never from the previous boundary. A monthly plan anchored on
31 January therefore renews on 28 February (29 in a leap year), 31 March, 30 April, 31 May…; an annual plan
anchored on 29 February renews on 28 February in common years and on 29 February in leap years.
"""

import calendar
from datetime import datetime

MONTHS_PER_INTERVAL = {"month": 1, "year": 12}


def add_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month `months` later, clamped to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _step(interval: str) -> int:
    try:
        return MONTHS_PER_INTERVAL[interval]
    except KeyError:
        raise ValueError(f"Unknown billing interval {interval!r}") from None


def anchored_boundary(anchor: datetime, interval: str, n: int) -> datetime:
    """The n-th period boundary of a subscription anchored at `anchor` (n = 0 is the anchor itself)."""
    return add_months(anchor, n * _step(interval))


def next_boundary(anchor: datetime, interval: str, after: datetime) -> datetime:
    """The first anchored boundary strictly after `after` (the end of the period that contains `after`)."""
    step = _step(interval)
    months = (after.year - anchor.year) * 12 + (after.month - anchor.month)
    n = max(0, months // step - 1)
    while n > 0 and add_months(anchor, n * step) > after:
        n -= 1
    boundary = add_months(anchor, n * step)
    while boundary <= after:
        n += 1
        boundary = add_months(anchor, n * step)
    return boundary


def period_end(start: datetime, interval: str, *, anchor: datetime | None = None) -> datetime:
    """The end of the period starting at `start`: the next boundary of `anchor` (by default `start` itself, i.e. a
    new term anchored on its first day)."""
    return next_boundary(anchor or start, interval, start)
