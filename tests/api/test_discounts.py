"""Promotion codes over the API (issue 22): the discount preview and apply, codes on seat/package changes and at
sign-up; a bad code is a coded 4xx and changes nothing."""

import pytest

from billing.models import Discount, Invoice
from subscriptions.models import Customer, Subscription, User
from subscriptions.services.subscriptions import subscription_create
from tests.api.conftest import as_user, assert_error
from tests.api.test_signup import payload
from tests.billing.discount_support import make_code, make_coupon
from tests.factories import priced_package

pytestmark = pytest.mark.django_db


@pytest.fixture
def packages(db):
    return {"team": priced_package(slug="team", name="Team")}


@pytest.fixture
def sub(acme, packages) -> Subscription:
    return subscription_create(customer=acme.customer, package=packages["team"], interval="month", seats=10)


@pytest.fixture
def launch(db):
    return make_code(make_coupon(duration="repeating", periods=3))


def url(sub, suffix: str = "") -> str:
    return f"/api/v1/customers/{sub.customer_id}/subscriptions/{sub.pk}/{suffix}"


def test_discount_preview_shows_the_discounted_next_invoice_and_writes_nothing(acme, sub, launch):
    response = as_user(acme.owner).post(url(sub, "discounts/preview/"), {"promotion_code": "launch20"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    # Team 100.00 + 5 additional seats × 10.00, 20 % off each line
    assert [line["amount"] for line in body["lines"]] == [10_000, 5_000]
    assert [line["amount"] for line in body["discount_lines"]] == [-2_000, -1_000]
    assert (body["discount_total"], body["subtotal"], body["total"]) == (-3_000, 12_000, 12_000 + body["tax"])
    assert body["promotion_code"] == "LAUNCH20" and body["discount_ends_at"] is not None
    assert "20 % off" in body["discount_description"]
    assert not Discount.objects.exists()


def test_discount_apply_redeems_once(acme, sub, launch):
    client = as_user(acme.billing_admin)
    response = client.post(url(sub, "discounts/"), {"promotion_code": "LAUNCH20"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["discount"]["promotion_code"] == "LAUNCH20" and body["discount"]["periods_total"] == 3
    assert body["next_invoice"]["subtotal"] == 12_000
    again = client.post(url(sub, "discounts/"), {"promotion_code": "LAUNCH20"}, format="json")
    assert_error(again, 422, "promotion_code_limit_reached", "promotion_code")
    assert Discount.objects.count() == 1


@pytest.mark.parametrize(
    "coupon_kwargs, code_kwargs, code",
    [
        ({}, {"code": "OTHER"}, "promotion_code_invalid"),
        ({}, {"is_active": False}, "promotion_code_invalid"),
        ({"max_redemptions": 0}, {}, "promotion_code_limit_reached"),
        ({"min_seats": 50}, {}, "promotion_code_not_applicable"),
        ({"amounts": {"EUR": 500}}, {}, "promotion_code_not_applicable"),
    ],
)
@pytest.mark.parametrize("suffix", ["discounts/preview/", "discounts/"])
def test_a_bad_code_is_a_coded_4xx_and_changes_nothing(acme, sub, coupon_kwargs, code_kwargs, code, suffix):
    make_code(make_coupon(**coupon_kwargs), **code_kwargs)
    response = as_user(acme.owner).post(url(sub, suffix), {"promotion_code": "LAUNCH20"}, format="json")
    assert_error(response, 422, code, "promotion_code")
    assert not Discount.objects.exists()


def test_an_expired_code_is_promotion_code_expired(acme, sub):
    from django.utils import timezone

    make_code(make_coupon(), expires_at=timezone.now())
    response = as_user(acme.owner).post(url(sub, "discounts/"), {"promotion_code": "LAUNCH20"}, format="json")
    assert_error(response, 422, "promotion_code_expired", "promotion_code")


def test_discounts_of_another_customer_are_404_and_members_are_403(acme, globex, packages, launch):
    foreign = subscription_create(customer=globex.customer, package=packages["team"], interval="month", seats=4)
    response = as_user(acme.owner).post(
        f"/api/v1/customers/{acme.customer.pk}/subscriptions/{foreign.pk}/discounts/",
        {"promotion_code": "LAUNCH20"},
        format="json",
    )
    assert_error(response, 404)
    own = subscription_create(customer=acme.customer, package=packages["team"], interval="month", seats=4)
    assert_error(as_user(acme.member).post(url(own, "discounts/"), {"promotion_code": "LAUNCH20"}, format="json"), 403)
    assert not Discount.objects.exists()


def test_invalid_codes_are_throttled_with_429(acme, sub, settings):
    settings.PROMOTION_CODE_THROTTLE_CUSTOMER_LIMIT = 2
    client = as_user(acme.owner)
    for guess in ("AAAA", "BBBB"):
        assert_error(client.post(url(sub, "discounts/preview/"), {"promotion_code": guess}, format="json"), 422)
    response = client.post(url(sub, "discounts/preview/"), {"promotion_code": "CCCC"}, format="json")
    assert_error(response, 429, "promotion_code_throttled", "promotion_code")


def test_seat_change_with_a_code_previews_and_bills_the_same_discounted_amount(acme, sub, launch):
    client = as_user(acme.owner)
    preview = client.post(
        url(sub, "seat-changes/preview/"), {"seats": 14, "promotion_code": "launch20"}, format="json"
    ).json()
    assert preview["discount_lines"] and preview["discount_total"] < 0
    assert preview["subtotal"] == sum(line["amount"] for line in preview["lines"]) + preview["discount_total"]
    response = client.post(
        url(sub, "seat-changes/"),
        {"seats": 14, "version": preview["version"], "promotion_code": "launch20"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["subtotal"], body["total"]) == (preview["subtotal"], preview["total"])
    if body["invoice_id"]:
        assert Invoice.objects.get(pk=body["invoice_id"]).total_minor == preview["total"]
    assert Discount.objects.get().subscription_id == sub.pk


def test_seat_change_with_a_bad_code_changes_nothing(acme, sub):
    make_code(make_coupon(min_seats=50))
    response = as_user(acme.owner).post(
        url(sub, "seat-changes/"), {"seats": 14, "version": 1, "promotion_code": "LAUNCH20"}, format="json"
    )
    assert_error(response, 422, "promotion_code_not_applicable", "promotion_code")
    sub.refresh_from_db()
    assert sub.seats == 10 and sub.version == 1


def test_signup_with_a_promotion_code(client, packages, launch):
    response = client.post("/api/v1/signup/", payload(promotion_code="Launch20"), format="json")
    assert response.status_code == 201, response.content
    discount = Discount.objects.get()
    assert discount.customer.name == "Initech" and discount.promotion_code == launch


def test_signup_with_a_bad_code_creates_nothing(client, packages, launch):
    response = client.post("/api/v1/signup/", payload(promotion_code="NOPE"), format="json")
    assert_error(response, 422, "promotion_code_invalid", "promotion_code")
    assert not Customer.objects.exists() and not User.objects.filter(email="bill@initech.test").exists()


def test_signup_with_a_promotion_code_discounts_the_first_invoice(
    client, packages, launch, django_capture_on_commit_callbacks
):
    """Found by the simulated year (issue 22): a code entered at sign-up must discount the first period's invoice."""
    from billing.services.billing_run import billing_run

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/v1/signup/", payload(promotion_code="Launch20"), format="json")
    assert response.status_code == 201, response.content
    with django_capture_on_commit_callbacks(execute=True):
        billing_run()
    invoice = Invoice.objects.get()
    kinds = [line.kind for line in invoice.lines.order_by("position")]
    assert "discount" in kinds, [(line.description, line.amount_minor) for line in invoice.lines.all()]
