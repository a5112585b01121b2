"""The test clock.

`CONTINUUM_TEST_NOW=2027-03-01T00:10:00Z pytest …` (what `make test-calendar` does for each of its dates) starts
`time_machine.travel(…, tick=True)` for the whole session, before any test module is imported: module-level dates
built from `tests.clock` and every `timezone.now()` then see that day. Time keeps running from there. A test that
pins its own clock (the `time_machine` fixture, `time_machine.travel`) still wins for its duration. Without the
variable the real clock is used, and the suite must pass on any day of the year.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
import time_machine

_travel: time_machine.travel | None = None


def pinned_now() -> datetime | None:
    value = os.environ.get("CONTINUUM_TEST_NOW", "").strip()
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    global _travel
    moment = pinned_now()
    if moment is not None and _travel is None:
        _travel = time_machine.travel(moment, tick=True)
        _travel.start()


def pytest_report_header(config: pytest.Config) -> str | None:
    moment = pinned_now()
    return f"clock pinned at {moment.isoformat()} (CONTINUUM_TEST_NOW)" if moment else None


def pytest_unconfigure(config: pytest.Config) -> None:
    global _travel
    if _travel is not None:
        _travel.stop()
        _travel = None
