"""Shared fixtures. App-specific fixtures live in tests/<app>/conftest.py."""

import pytest


@pytest.fixture
def password() -> str:
    return "continuum-demo"


# Marker rules (integration/postgres/browser) and the real-process fixtures: celery_worker_process,
# localstripe_server/localstripe, http_receiver, browser/page. See tests/support/plugin.py.
pytest_plugins = ["tests.support.clock", "tests.support.plugin", "tests.support.log_audit"]


@pytest.fixture(autouse=True)
def _fresh_local_cache():
    """Each test starts with an empty local-memory cache. A test database rolls back, and on SQLite its ids start
    again where the last test's began, so a cached page of the last test could carry the same data version
    (portal/page_cache.py): in production ids only grow. (Tests never use a shared cache.)"""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()


@pytest.fixture
def page_cache_off(settings):
    """For a test that counts what a page costs to *compute* (its queries as rows grow): with the page cache on, a
    second request of an unchanged page is a hit and would hide a query that grows. tests/portal/test_page_cache.py
    holds what a hit costs and that it is never stale."""
    settings.PAGE_CACHE = False


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Every outbound event any test caused must match its published JSON schema (docs/webhooks.md)."""
    result = yield  # re-raises when the test itself failed
    if item.get_closest_marker("django_db") is not None:
        from django.db import connection

        if not connection.needs_rollback:  # a test that ends inside a broken transaction cannot be read
            from tests.support.event_schemas import assert_events_match_schemas

            assert_events_match_schemas()
    return result
