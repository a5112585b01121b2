"""Shared fixtures. App-specific fixtures live in tests/<app>/conftest.py."""

import pytest


@pytest.fixture
def password() -> str:
    return "continuum-demo"


# Marker rules (integration/postgres/browser) and the real-process fixtures: celery_worker_process,
# localstripe_server/localstripe, http_receiver, browser/page. See tests/support/plugin.py.
pytest_plugins = ["tests.support.clock", "tests.support.plugin"]


@pytest.fixture
def worked_example_clock(time_machine):
    """Pin the clock inside the worked-example month (November 2026, see tests/clock.py): the default subscription
    then runs [1 Nov 2026, 1 Dec 2026), as the hand-checked amounts expect. Overrides CONTINUUM_TEST_NOW."""
    from tests.clock import WORKED_EXAMPLE_NOW

    time_machine.move_to(WORKED_EXAMPLE_NOW, tick=True)
    return WORKED_EXAMPLE_NOW


# Hypothesis on a shared or pinned-clock machine: CI's two CPUs are busy and time-machine slows datetime draws, so
# slow generation or a slow example is not a failure; properties still run their full number of examples.
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

hypothesis_settings.register_profile("continuum", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("continuum")
