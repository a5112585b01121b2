"""Shared fixtures. App-specific fixtures live in tests/<app>/conftest.py."""

import pytest


@pytest.fixture
def password() -> str:
    return "continuum-demo"


# Marker rules (integration/postgres/browser) and the real-process fixtures: celery_worker_process,
# localstripe_server/localstripe, http_receiver, browser/page. See tests/support/plugin.py.
pytest_plugins = ["tests.support.clock", "tests.support.plugin", "tests.support.log_audit"]


@pytest.fixture
def worked_example_clock(time_machine):
    """Pin the clock inside the worked-example month (November 2026, see tests/clock.py): the default subscription
    then runs [1 Nov 2026, 1 Dec 2026), as the hand-checked amounts expect. Overrides CONTINUUM_TEST_NOW."""
    from tests.clock import WORKED_EXAMPLE_NOW

    time_machine.move_to(WORKED_EXAMPLE_NOW, tick=True)
    return WORKED_EXAMPLE_NOW
