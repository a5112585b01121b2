"""Shared fixtures. App-specific fixtures live in tests/<app>/conftest.py."""

import pytest


@pytest.fixture
def password() -> str:
    return "continuum-demo"


# Marker rules (integration/postgres/browser) and the real-process fixtures: celery_worker_process,
# localstripe_server/localstripe, http_receiver, browser/page. See tests/support/plugin.py.
pytest_plugins = ["tests.support.plugin", "tests.support.log_audit"]
