"""Dates for tests, all relative to now (the real clock, or the one `CONTINUUM_TEST_NOW` pins for the session; see
tests/support/clock.py). Never write an absolute future date in a test: build it from these."""

from datetime import UTC, date, datetime, timedelta

from subscriptions import clock
from subscriptions.periods import add_months


def now() -> datetime:
    return clock.now()


def today() -> date:
    return clock.today()


def days_from_today(days: int) -> date:
    return today() + timedelta(days=days)


def in_years(years: int = 1) -> date:
    """A date `years` from today (31 Dec of that year: never a 29 February that does not exist)."""
    return date(today().year + years, 12, 31)


def day_start(days: int = 0) -> datetime:
    """Midnight UTC at the start of today (or `days` later)."""
    return datetime.combine(days_from_today(days), datetime.min.time(), tzinfo=UTC)


def month_start(months: int = 0, *, moment: datetime | None = None) -> datetime:
    """Midnight UTC on the 1st of the month `months` after the one containing `moment` (default now)."""
    moment = (moment or now()).astimezone(UTC)
    return add_months(datetime(moment.year, moment.month, 1, tzinfo=UTC), months)


# The worked examples (docs/billing-rules.md and the amounts the service tests check by hand) are set in a 30-day
# November followed by a 31-day December. Modules that check them pin the clock here with the `worked_example_clock`
# fixture (tests/conftest.py), so they never depend on the real date; the date-relative tests (tests/calendar/) run the
# same services on whatever day the clock says.
WORKED_EXAMPLE_NOW = datetime(2026, 11, 12, 15, 30, tzinfo=UTC)
