"""Fixtures for API tests: two customers with one person per role each, API keys per role, an API client."""

from dataclasses import dataclass

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from portal.models import ApiKeyRole
from portal.services.api_keys import access_token_create, api_key_create
from subscriptions.models import Customer, Role, User
from tests.factories import CustomerFactory, MembershipFactory, UserFactory, priced_package


@pytest.fixture(autouse=True)
def _fresh_throttles():
    # Throttle counters live in the cache; each test starts with empty buckets.
    cache.clear()
    yield
    cache.clear()


@dataclass
class Account:
    customer: Customer
    owner: User
    billing_admin: User
    member: User

    def user(self, role: str) -> User:
        return {Role.OWNER: self.owner, Role.BILLING_ADMIN: self.billing_admin, Role.MEMBER: self.member}[role]


def make_account(name: str) -> Account:
    customer = CustomerFactory(name=name)
    slug = name.lower().replace(" ", "")
    users = {}
    for role in (Role.OWNER, Role.BILLING_ADMIN, Role.MEMBER):
        user = UserFactory(email=f"{role}@{slug}.test")
        MembershipFactory(user=user, customer=customer, role=role)
        users[role] = user
    return Account(customer, users[Role.OWNER], users[Role.BILLING_ADMIN], users[Role.MEMBER])


@pytest.fixture
def acme(db) -> Account:
    return make_account("Acme")


@pytest.fixture
def globex(db) -> Account:
    return make_account("Globex")


@pytest.fixture
def package(db):
    return priced_package(slug="team", name="Team")


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def bearer(secret: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return api


def as_user(user: User) -> APIClient:
    _, secret = access_token_create(user=user)
    return bearer(secret)


def as_key(account: Account, role: str = ApiKeyRole.ADMIN) -> APIClient:
    _, secret = api_key_create(customer=account.customer, name=f"{role} key", role=role, actor=account.owner)
    return bearer(secret)


def caller(account: Account, who: str) -> APIClient:
    """`who` is a membership role (owner, billing_admin, member) or key:<role> (key:read_only, key:billing…)."""
    if who.startswith("key:"):
        return as_key(account, who.removeprefix("key:"))
    return as_user(account.user(who))


def assert_error(response, status: int, code: str | None = None, field: str | None = "<any>"):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "field"} <= set(body["error"]), body
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    if field != "<any>":
        assert body["error"]["field"] == field, body
    return body["error"]


ROLES = ["owner", "billing_admin", "member", "key:admin", "key:billing", "key:read_only"]
