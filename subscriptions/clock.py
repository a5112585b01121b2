"""What "now" and "today" are, for the whole project.

Every datetime is aware and in UTC, and "today" is the UTC calendar date of now: billing periods, proration, due
dates and exemption validity all count UTC days (docs/billing-rules.md). Code asks this module, never
`timezone.localdate()` (which follows TIME_ZONE) or a hand-made `now().date()`, so the rule lives in one place and
tests pin it with time-machine.
"""

from datetime import UTC, date, datetime, time

from django.utils import timezone


def now() -> datetime:
    """The current instant, aware, in UTC."""
    return timezone.now().astimezone(UTC)


def today() -> date:
    """The current UTC calendar date."""
    return now().date()


def utc_date(moment: datetime) -> date:
    """The UTC calendar date of an aware datetime."""
    if timezone.is_naive(moment):
        raise ValueError("An aware datetime is needed to know its UTC date.")
    return moment.astimezone(UTC).date()


def as_utc(value: str | date | datetime) -> datetime:
    """An aware UTC datetime from what an operator or a task message may carry: an aware datetime, a naive one
    (read as UTC), a date (its midnight UTC) or the ISO text of either ("2026-12-01", "2026-12-01T00:10")."""
    if isinstance(value, str):
        text = value.strip()
        value = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.min)
    if timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
