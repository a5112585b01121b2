"""Billing periods: half-open [start, end), aware datetimes in UTC, months added calendar-wise."""

import calendar
from datetime import datetime


def add_months(moment: datetime, months: int) -> datetime:
    """Same day-of-month `months` later, clamped to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_end(start: datetime, interval: str) -> datetime:
    if interval == "month":
        return add_months(start, 1)
    if interval == "year":
        return add_months(start, 12)
    raise ValueError(f"Unknown billing interval {interval!r}")
