"""Subscriptions over the API: read, seat and package changes (preview → apply), cancel/reactivate, idempotency."""

import pytest

from subscriptions.models import SeatAssignment, Subscription, SubscriptionChange
from subscriptions.services.changes import subscription_change_seats_preview
from subscriptions.services.subscriptions import subscription_create
from tests.api.conftest import ROLES, as_user, assert_error, caller
from tests.factories import UserFactory, priced_package

pytestmark = pytest.mark.django_db

SUBSCRIPTION_FIELDS = {
    "id",
    "status",
    "package",
    "interval",
    "seats",
    "seats_assigned",
    "current_period_start",
    "current_period_end",
    "cancel_at_period_end",
    "scheduled_changes",
    "version",
}
RESULT_FIELDS = {
    "lines",
    "subtotal",
    "tax",
    "total",
    "amount_due_now",
    "next_recurring_amount",
    "currency",
    "effective_at",
    "version",
}
LINE_FIELDS = {"description", "period_start", "period_end", "quantity", "unit_amount", "amount", "proration"}


@pytest.fixture
def packages(db):
    team = priced_package(slug="team", name="Team")
    business = priced_package(slug="business", name="Business")
    team.change_targets.add(business)
    business.change_targets.add(team)
    return {"team": team, "business": business}


@pytest.fixture
def sub(acme, packages) -> Subscription:
    return subscription_create(customer=acme.customer, package=packages["team"], interval="month", seats=10)


@pytest.fixture
def foreign_sub(globex, packages) -> Subscription:
    return subscription_create(customer=globex.customer, package=packages["team"], interval="month", seats=4)


def url(sub, suffix: str = "") -> str:
    return f"/api/v1/customers/{sub.customer_id}/subscriptions/{sub.pk}/{suffix}"


@pytest.mark.parametrize("who", ROLES)
def test_subscription_list_and_detail_for_every_role(acme, sub, who):
    client = caller(acme, who)
    listing = client.get(f"/api/v1/customers/{acme.customer.pk}/subscriptions/")
    assert listing.status_code == 200
    [item] = listing.json()["results"]
    assert set(item) >= SUBSCRIPTION_FIELDS
    detail = client.get(url(sub)).json()
    assert detail == item
    assert detail["package"] == {"slug": "team", "name": "Team"}
    assert (detail["status"], detail["interval"], detail["seats"], detail["version"]) == ("active", "month", 10, 1)
    assert detail["current_period_start"].endswith("Z")


def test_subscription_seats_assigned_and_scheduled_changes(acme, sub):
    SeatAssignment.objects.create(subscription=sub, user=acme.member)
    client = as_user(acme.owner)
    # a decrease is scheduled for the period end and shows up on the subscription
    preview = client.post(url(sub, "seat-changes/preview/"), {"seats": 8}, format="json").json()
    applied = client.post(url(sub, "seat-changes/"), {"seats": 8, "version": preview["version"]}, format="json")
    assert applied.status_code == 201, applied.content
    body = client.get(url(sub)).json()
    assert body["seats_assigned"] == 1
    assert body["seats"] == 10
    [change] = body["scheduled_changes"]
    assert change["kind"] == "seats" and change["effective_at"] == body["current_period_end"]


@pytest.mark.parametrize("who", ROLES)
def test_subscription_of_other_customer_is_404(acme, globex, foreign_sub, who):
    client = caller(acme, who)
    assert_error(client.get(f"/api/v1/customers/{globex.customer.pk}/subscriptions/"), 404, "not_found")
    assert_error(client.get(url(foreign_sub)), 404, "not_found")
    # the foreign subscription id under the caller's own customer is just as unknown
    assert_error(client.get(f"/api/v1/customers/{acme.customer.pk}/subscriptions/{foreign_sub.pk}/"), 404, "not_found")
    for suffix, body in [
        ("seat-changes/preview/", {"seats": 5}),
        ("seat-changes/", {"seats": 5, "version": 1}),
        ("package-changes/preview/", {"package": "business"}),
        ("package-changes/", {"package": "business", "version": 1}),
        ("cancel/", {}),
        ("reactivate/", {}),
    ]:
        assert_error(client.post(url(foreign_sub, suffix), body, format="json"), 404, "not_found")
        assert_error(
            client.post(
                f"/api/v1/customers/{acme.customer.pk}/subscriptions/{foreign_sub.pk}/{suffix}", body, format="json"
            ),
            404,
            "not_found",
        )
    foreign_sub.refresh_from_db()
    assert (foreign_sub.seats, foreign_sub.version, foreign_sub.cancel_at_period_end) == (4, 1, False)


def test_subscription_list_query_count_does_not_grow(acme, packages, django_assert_max_num_queries):
    for _ in range(8):
        subscription_create(customer=acme.customer, package=packages["team"], interval="month", seats=3)
    client = as_user(acme.owner)
    with django_assert_max_num_queries(12):
        response = client.get(f"/api/v1/customers/{acme.customer.pk}/subscriptions/")
    assert response.json()["count"] == 8


def test_seat_change_preview_matches_the_service(acme, sub):
    response = as_user(acme.owner).post(url(sub, "seat-changes/preview/"), {"seats": 12}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= RESULT_FIELDS
    expected = subscription_change_seats_preview(subscription_id=sub.pk, seats=12)
    [line] = body["lines"]
    assert set(line) == LINE_FIELDS
    assert line["quantity"] == 2 and line["unit_amount"] == 1_000 and line["proration"] is True
    assert line["amount"] == expected.lines[0].amount_minor
    assert body["subtotal"] == expected.amount_due_now_minor
    assert body["total"] == body["subtotal"] + body["tax"]
    assert body["currency"] == "USD" and body["version"] == 1
    sub.refresh_from_db()
    assert sub.seats == 10 and not SubscriptionChange.objects.exists()  # a preview writes nothing


def test_seat_change_apply_changes_seats_and_bumps_version(acme, sub):
    client = as_user(acme.billing_admin)
    preview = client.post(url(sub, "seat-changes/preview/"), {"seats": 12}, format="json").json()
    response = client.post(url(sub, "seat-changes/"), {"seats": 12, "version": preview["version"]}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["subtotal"] == preview["subtotal"]
    assert [(line["description"], line["amount"]) for line in body["lines"]] == [
        (line["description"], line["amount"]) for line in preview["lines"]
    ]
    sub.refresh_from_db()
    assert sub.seats == 12
    assert body["version"] == sub.version == 2
    assert SubscriptionChange.objects.get().actor == acme.billing_admin


def test_seat_change_apply_with_stale_version_is_409(acme, sub):
    client = as_user(acme.owner)
    assert client.post(url(sub, "seat-changes/"), {"seats": 12, "version": 1}, format="json").status_code == 201
    response = client.post(url(sub, "seat-changes/"), {"seats": 14, "version": 1}, format="json")
    assert_error(response, 409, "stale_preview")
    sub.refresh_from_db()
    assert sub.seats == 12


def test_seat_change_below_assigned_is_422_naming_seats(acme, sub):
    for n in range(3):
        SeatAssignment.objects.create(subscription=sub, user=UserFactory(email=f"holder{n}@acme.test"))
    response = as_user(acme.owner).post(url(sub, "seat-changes/preview/"), {"seats": 2}, format="json")
    error = assert_error(response, 422, "seats_below_assigned", "seats")
    assert "3" in error["message"]


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({}, "required", "seats"),
        ({"seats": "many"}, "invalid", "seats"),
        ({"seats": -1}, "min_value", "seats"),
        ({"seats": 10**30}, "max_value", "seats"),
        ({"seats": 12, "seat": 3}, "unknown_field", "seat"),
        ({"seats": 12, "version": 1}, "unknown_field", "version"),  # the preview takes no version
    ],
)
def test_seat_change_preview_bad_input_is_400(acme, sub, body, code, field):
    assert_error(as_user(acme.owner).post(url(sub, "seat-changes/preview/"), body, format="json"), 400, code, field)


def test_seat_change_apply_requires_version(acme, sub):
    assert_error(as_user(acme.owner).post(url(sub, "seat-changes/"), {"seats": 12}, format="json"), 400, "required")


@pytest.mark.parametrize(
    "who, status",
    [("owner", 201), ("billing_admin", 201), ("member", 403), ("key:read_only", 403), ("key:billing", 201)],
)
def test_seat_change_apply_by_role(acme, sub, who, status):
    response = caller(acme, who).post(url(sub, "seat-changes/"), {"seats": 11, "version": 1}, format="json")
    assert response.status_code == status, response.content
    if status == 403:
        assert_error(response, 403, "permission_denied")
        sub.refresh_from_db()
        assert sub.seats == 10


def test_seat_change_apply_idempotency_key_replays_first_response(acme, sub):
    client = as_user(acme.owner)
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-1"}
    first = client.post(url(sub, "seat-changes/"), {"seats": 12, "version": 1}, format="json", **headers)
    second = client.post(url(sub, "seat-changes/"), {"seats": 12, "version": 1}, format="json", **headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second["Idempotent-Replayed"] == "true"
    assert SubscriptionChange.objects.count() == 1
    sub.refresh_from_db()
    assert (sub.seats, sub.version) == (12, 2)


def test_seat_change_apply_idempotency_key_with_different_body_is_422(acme, sub):
    client = as_user(acme.owner)
    headers = {"HTTP_IDEMPOTENCY_KEY": "retry-2"}
    client.post(url(sub, "seat-changes/"), {"seats": 12, "version": 1}, format="json", **headers)
    response = client.post(url(sub, "seat-changes/"), {"seats": 13, "version": 2}, format="json", **headers)
    assert_error(response, 422, "idempotency_key_reused", "Idempotency-Key")
    sub.refresh_from_db()
    assert sub.seats == 12 and SubscriptionChange.objects.count() == 1


def test_idempotency_keys_are_per_caller(acme, sub):
    headers = {"HTTP_IDEMPOTENCY_KEY": "same"}
    first = as_user(acme.owner).post(url(sub, "seat-changes/"), {"seats": 12, "version": 1}, format="json", **headers)
    assert first.status_code == 201
    # another caller's identical key is theirs: it is not replayed, the request runs (and is refused: nothing to do)
    other = as_user(acme.billing_admin).post(
        url(sub, "seat-changes/"), {"seats": 12, "version": 2}, format="json", **headers
    )
    assert_error(other, 422, "no_change", "seats")


def test_idempotency_key_not_stored_for_errors(acme, sub):
    client = as_user(acme.owner)
    headers = {"HTTP_IDEMPOTENCY_KEY": "fix-and-retry"}
    bad = client.post(url(sub, "seat-changes/"), {"seats": 12, "version": 7}, format="json", **headers)
    assert_error(bad, 409, "stale_preview")
    good = client.post(url(sub, "seat-changes/"), {"seats": 12, "version": 1}, format="json", **headers)
    assert good.status_code == 201


def test_idempotency_key_too_long_is_400(acme, sub):
    response = as_user(acme.owner).post(
        url(sub, "seat-changes/"), {"seats": 12, "version": 1}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 256
    )
    assert_error(response, 400, field="Idempotency-Key")


def test_package_change_preview_and_apply(acme, sub):
    client = as_user(acme.owner)
    preview = client.post(
        url(sub, "package-changes/preview/"), {"package": "business", "interval": "year"}, format="json"
    )
    assert preview.status_code == 200, preview.content
    body = preview.json()
    assert set(body) >= RESULT_FIELDS and body["lines"]
    applied = client.post(
        url(sub, "package-changes/"),
        {"package": "business", "interval": "year", "version": body["version"]},
        format="json",
    )
    assert applied.status_code == 201, applied.content
    detail = client.get(url(sub)).json()
    assert detail["version"] == applied.json()["version"]
    assert detail["package"]["slug"] == "business" or detail["scheduled_changes"]


def test_package_change_unknown_package_is_422(acme, sub):
    response = as_user(acme.owner).post(url(sub, "package-changes/preview/"), {"package": "nope"}, format="json")
    assert_error(response, 422, "package_unknown", "package")


def test_package_change_bad_interval_is_400(acme, sub):
    response = as_user(acme.owner).post(
        url(sub, "package-changes/preview/"), {"package": "business", "interval": "week"}, format="json"
    )
    assert_error(response, 400, "invalid_choice", "interval")


@pytest.mark.parametrize("who", ["billing_admin", "member", "key:billing", "key:read_only"])
def test_package_change_and_cancel_need_owner_or_admin_key(acme, sub, who):
    client = caller(acme, who)
    assert_error(client.post(url(sub, "package-changes/preview/"), {"package": "business"}, format="json"), 403)
    assert_error(client.post(url(sub, "cancel/"), {}, format="json"), 403, "permission_denied")
    sub.refresh_from_db()
    assert sub.cancel_at_period_end is False


def test_cancel_then_reactivate(acme, sub):
    client = caller(acme, "key:admin")
    cancel = client.post(url(sub, "cancel/"), {"reason": "Budget", "version": 1}, format="json")
    assert cancel.status_code == 201, cancel.content
    assert client.get(url(sub)).json()["cancel_at_period_end"] is True
    reactivate = client.post(url(sub, "reactivate/"), {}, format="json")
    assert reactivate.status_code == 201, reactivate.content
    body = client.get(url(sub)).json()
    assert body["cancel_at_period_end"] is False
    assert body["version"] == reactivate.json()["version"] == 3


def test_reactivate_when_not_canceled_is_422(acme, sub):
    response = as_user(acme.owner).post(url(sub, "reactivate/"), {}, format="json")
    assert response.status_code == 422
    assert_error(response, 422)
