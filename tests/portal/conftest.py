"""Portal fixtures: one customer with a live subscription and one person per role, plus a stranger customer."""

from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.test import Client

from subscriptions.models import Customer, Role, SeatAssignment, Subscription, User
from subscriptions.services.subscriptions import subscription_create
from tests.factories import CustomerFactory, MembershipFactory, UserFactory, priced_package


@dataclass
class Account:
    customer: Customer
    subscription: Subscription
    owner: User
    billing_admin: User
    member: User

    def user(self, role: str) -> User:
        return {"owner": self.owner, "billing_admin": self.billing_admin, "member": self.member}[role]


@pytest.fixture(autouse=True)
def _clear_cache():
    # Login throttle counters live in the cache; each test starts clean.
    cache.clear()
    yield
    cache.clear()


def make_account(name: str = "Acme Inc", *, seats: int = 10, package=None, country="US", currency="USD") -> Account:
    package = package or priced_package(slug="team", name="Team")
    customer = CustomerFactory(name=name, country=country, currency=currency)
    owner = UserFactory(name=f"{name} Owner")
    billing_admin = UserFactory(name=f"{name} Billing")
    member = UserFactory(name=f"{name} Member")
    MembershipFactory(customer=customer, user=owner, role=Role.OWNER)
    MembershipFactory(customer=customer, user=billing_admin, role=Role.BILLING_ADMIN)
    MembershipFactory(customer=customer, user=member, role=Role.MEMBER)
    subscription = subscription_create(customer=customer, package=package, interval="month", seats=seats, actor=owner)
    SeatAssignment.objects.create(subscription=subscription, user=owner)
    SeatAssignment.objects.create(subscription=subscription, user=member)
    return Account(customer, subscription, owner, billing_admin, member)


@pytest.fixture
def account(db) -> Account:
    return make_account()


@pytest.fixture
def other_account(db, account) -> Account:
    return make_account("Globex Corp", seats=5, package=account.subscription.package)


@pytest.fixture
def client_for():
    """`client_for(user)` → a test client signed in as that user."""

    def _client(user: User) -> Client:
        c = Client()
        c.force_login(user)
        return c

    return _client
