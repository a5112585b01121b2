"""Back-office fixtures: one logged-in client per role; groups come from the data migration, not from here."""

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from tests.factories import UserFactory


def _staff(email: str, group: str | None = None, **extra):
    user = UserFactory(email=email, is_staff=True, **extra)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def support_user(db):
    return _staff("support@continuum.test", "Support agents")


@pytest.fixture
def billing_user(db):
    return _staff("billing@continuum.test", "Billing staff")


@pytest.fixture
def superuser(db):
    return _staff("admin@continuum.test", is_superuser=True)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def support_client(support_user):
    return _client(support_user)


@pytest.fixture
def billing_client(billing_user):
    return _client(billing_user)


@pytest.fixture
def super_client(superuser):
    return _client(superuser)


# localstripe on 127.0.0.1 for the payment actions (tests/billing/stripe_support.py).
from tests.billing.stripe_support import stripe_server, stripe_server_session  # noqa: E402,F401
