"""Discounts in the back office (issue 22): billing staff attach a coupon with a preview of the next invoice (through
the service), redemptions are listed, a redeemed coupon is read-only, support agents cannot attach."""

import pytest
from django.urls import reverse

from billing.models import Coupon, Discount
from billing.services.discounts import discount_redeem
from tests.billing.discount_support import make_code, make_coupon
from tests.factories import CustomerFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sub(db):
    return SubscriptionFactory(customer=CustomerFactory(name="Acme"))  # Team 100.00 + 5 × 10.00


def test_attach_previews_the_next_invoice_then_attaches(billing_client, billing_user, sub):
    coupon = make_coupon(percent="10")
    url = reverse("admin:billing_discount_attach")
    data = {"customer": sub.customer_id, "subscription": sub.pk, "coupon": coupon.pk}
    preview = billing_client.post(url, data)
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Discount: Launch 20 (10 % off)" in html and "USD -10.00" in html and "USD 135.00" in html
    assert not Discount.objects.exists()
    confirmed = billing_client.post(url, {**data, "confirm": "1"})
    assert confirmed.status_code == 302
    discount = Discount.objects.get()
    assert (discount.subscription, discount.created_by) == (sub, billing_user)
    changelist = billing_client.get(reverse("admin:billing_discount_changelist")).content.decode()
    assert "Acme" in changelist and "Attach a coupon" in changelist


def test_attach_refusal_is_shown_and_changes_nothing(billing_client, sub):
    coupon = make_coupon(min_seats=50)
    url = reverse("admin:billing_discount_attach")
    response = billing_client.post(
        url, {"customer": sub.customer_id, "subscription": sub.pk, "coupon": coupon.pk, "confirm": "1"}, follow=True
    )
    assert "This offer needs at least 50 seats." in response.content.decode()
    assert not Discount.objects.exists()


def test_attach_refuses_another_customers_subscription(billing_client, sub):
    other = CustomerFactory(name="Globex")
    response = billing_client.post(
        reverse("admin:billing_discount_attach"),
        {"customer": other.pk, "subscription": sub.pk, "coupon": make_coupon().pk, "confirm": "1"},
    )
    assert response.status_code == 200 and "belongs to another customer" in response.content.decode()
    assert not Discount.objects.exists()


def test_support_agents_see_coupons_but_cannot_attach(support_client, sub):
    make_code(make_coupon())
    assert support_client.get(reverse("admin:billing_coupon_changelist")).status_code == 200
    assert support_client.get(reverse("admin:billing_discount_attach")).status_code == 403


def test_a_redeemed_coupon_is_read_only_in_the_admin(billing_client, sub):
    coupon = make_coupon()
    discount_redeem(customer=sub.customer, subscription=sub, coupon_id=coupon.pk)
    page = billing_client.get(reverse("admin:billing_coupon_change", args=[coupon.pk])).content.decode()
    assert 'name="percent_off"' not in page and 'name="is_active"' in page
    response = billing_client.post(
        reverse("admin:billing_coupon_change", args=[coupon.pk]),
        {
            "name": "Changed",
            "percent_off": "90",
            "is_active": "on",
            "amounts-TOTAL_FORMS": "0",
            "amounts-INITIAL_FORMS": "0",
            "promotion_codes-TOTAL_FORMS": "0",
            "promotion_codes-INITIAL_FORMS": "0",
            "discounts-TOTAL_FORMS": "1",
            "discounts-INITIAL_FORMS": "1",
        },
    )
    assert response.status_code in (200, 302)
    coupon.refresh_from_db()
    assert (coupon.name, str(coupon.percent_off)) == ("Launch 20", "20.00")


def test_billing_staff_create_a_coupon_with_a_code(billing_client):
    response = billing_client.post(
        reverse("admin:billing_coupon_add"),
        {
            "name": "Spring 15",
            "kind": "percent",
            "percent_off": "15",
            "duration": "repeating",
            "duration_periods": "3",
            "applies_to_all": "on",
            "is_active": "on",
            "amounts-TOTAL_FORMS": "0",
            "amounts-INITIAL_FORMS": "0",
            "promotion_codes-TOTAL_FORMS": "1",
            "promotion_codes-INITIAL_FORMS": "0",
            "promotion_codes-0-code": "SPRING15",
            "promotion_codes-0-is_active": "on",
            "discounts-TOTAL_FORMS": "0",
            "discounts-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    coupon = Coupon.objects.get(name="Spring 15")
    assert coupon.promotion_codes.get().code == "SPRING15"
