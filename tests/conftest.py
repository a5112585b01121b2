"""Shared fixtures. App-specific fixtures live in tests/<app>/conftest.py."""

import pytest


@pytest.fixture
def password() -> str:
    return "continuum-demo"
