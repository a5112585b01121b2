"""POST /api/v1/usage/: the product reports daily active use and feature use with a service token."""

from datetime import timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portal.services.api_keys import service_token_create
from subscriptions import clock
from subscriptions.exceptions import UsageInvalid
from subscriptions.models import Entitlement, UsageRecord
from subscriptions.services.usage import MAX_AGE_DAYS, UsageInput, usage_records_submit
from tests.api.conftest import as_user, assert_error, bearer
from tests.clock import days_from_today

pytestmark = pytest.mark.django_db


@pytest.fixture
def product():
    _, secret = service_token_create(name="product", scopes=["usage:write"], actor=None)
    return bearer(secret)


@pytest.fixture
def sso(acme):
    Entitlement.objects.create(
        customer=acme.customer, feature_key="sso", value_kind="boolean", desired_value=1, state="active"
    )


def post(client, *records):
    return client.post("/api/v1/usage/", {"records": list(records)}, format="json")


def test_usage_submit_stores_records_and_a_replay_replaces_the_count(acme, sso, product):
    day = str(days_from_today(-1))
    active = {"customer": acme.customer.pk, "user": acme.member.pk, "day": day, "kind": "active"}
    feature = {"customer": acme.customer.pk, "day": day, "kind": "feature", "feature": "sso", "count": 7}
    response = post(product, active, feature)
    assert response.status_code == 200, response.content
    assert response.json() == {"created": 2, "updated": 0}
    # the same report again (a retry) changes nothing but the counts it carries
    response = post(product, active, {**feature, "count": 9})
    assert response.json() == {"created": 0, "updated": 2}
    assert sorted(UsageRecord.objects.values_list("kind", "feature", "count", "user_id")) == [
        ("active", "", 1, acme.member.pk),
        ("feature", "sso", 9, None),
    ]


def test_usage_submit_refuses_other_customers_users_and_features_and_stores_nothing(acme, globex, sso, product):
    day = str(days_from_today(0))
    good = {"customer": acme.customer.pk, "day": day, "kind": "active"}
    cases = [
        ({"customer": 999_999, "day": day, "kind": "active"}, "records[1].customer"),
        ({"customer": acme.customer.pk, "user": globex.member.pk, "day": day, "kind": "active"}, "records[1].user"),
        ({"customer": globex.customer.pk, "day": day, "kind": "feature", "feature": "sso"}, "records[1].feature"),
        ({"customer": acme.customer.pk, "day": str(days_from_today(1)), "kind": "active"}, "records[1].day"),
        ({"customer": acme.customer.pk, "day": str(days_from_today(-MAX_AGE_DAYS - 1)), "kind": "active"}, None),
        (good, "records[1]"),
    ]
    for bad, field in cases:
        error = assert_error(post(product, good, bad), 422, "usage_invalid")
        if field:
            assert error["field"] == field
    assert not UsageRecord.objects.exists()


def test_usage_submit_bounds_the_request(acme, product):
    day = str(days_from_today(0))
    assert_error(post(product), 400)
    too_many = [{"customer": acme.customer.pk, "day": day, "kind": "active", "count": 1}] * 501
    assert_error(post(product, *too_many), 400)
    assert_error(post(product, {"customer": acme.customer.pk, "day": day, "kind": "active", "count": -1}), 400)
    assert_error(post(product, {"customer": acme.customer.pk, "day": day, "kind": "bogus"}), 400)
    assert_error(post(product, {"customer": acme.customer.pk, "day": "yesterday", "kind": "active"}), 400)
    assert not UsageRecord.objects.exists()


def test_usage_submit_needs_a_service_token_with_usage_scope(acme):
    _, secret = service_token_create(name="reader", scopes=["entitlements:read"], actor=None)
    record = {"customer": acme.customer.pk, "day": str(days_from_today(0)), "kind": "active"}
    assert_error(post(bearer(secret), record), 403, "permission_denied")
    assert_error(post(as_user(acme.owner), record), 403, "permission_denied")
    assert not UsageRecord.objects.exists()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(min_value=-400, max_value=400))
def test_usage_records_submit_accepts_exactly_the_window_of_days(acme, offset):
    # given a pinned clock, a record `offset` days from today
    with time_machine.travel(clock.now(), tick=False):
        day = clock.today() + timedelta(days=offset)
        record = UsageInput(customer_id=acme.customer.pk, day=day, kind="active")
        # then it is accepted iff it lies in [today - MAX_AGE_DAYS, today]
        if -MAX_AGE_DAYS <= offset <= 0:
            usage_records_submit(records=[record])
            assert UsageRecord.objects.filter(customer=acme.customer, day=day).count() == 1
        else:
            with pytest.raises(UsageInvalid):
                usage_records_submit(records=[record])
