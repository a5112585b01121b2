"""Promotion codes in the portal (issue 22): code entry on a seat change (the live preview shows the discount line,
the new total and when it ends), an invalid code, and the dashboard estimate with an active discount."""

import pytest
from django.urls import reverse

from billing.models import Discount
from billing.services.discounts import discount_redeem
from subscriptions.models import Subscription
from tests.billing.discount_support import make_code, make_coupon
from tests.portal.test_changes import _confirm, _hidden, _post

pytestmark = pytest.mark.django_db


def test_seat_preview_with_a_code_shows_the_discount_line_total_and_end(account, client_for):
    make_code(make_coupon(duration="repeating", periods=3))
    client = client_for(account.billing_admin)
    response = _post(client, account, "change_preview_seats", {"seats": "12", "promotion_code": "launch20"})
    assert response.status_code == 200, response.text
    html = response.text
    assert 'data-testid="discount-line"' in html and "Discount: Launch 20 (20 % off)" in html
    assert "until" in html and "code LAUNCH20, applied when you confirm" in html
    assert _hidden(html, "promotion_code") == "launch20"
    assert not Discount.objects.exists()
    # the confirm form carries the code (checked in the next test); here only that confirming still works
    applied = _confirm(client, account, "seats", html)
    assert applied.status_code == 302
    assert Subscription.objects.get(pk=account.subscription.pk).seats == 12


def test_confirm_carries_the_code_and_redeems_it(account, client_for):
    make_code(make_coupon())
    client = client_for(account.owner)
    html = _post(client, account, "change_preview_seats", {"seats": "12", "promotion_code": "LAUNCH20"}).text
    fields = {k: _hidden(html, k) for k in ("version", "amount_due_now_minor", "idempotency_key", "seats")}
    fields["promotion_code"] = _hidden(html, "promotion_code")
    applied = _post(client, account, "change_apply_seats", fields, htmx=False)
    assert applied.status_code == 302
    assert Discount.objects.get().subscription_id == account.subscription.pk


def test_an_invalid_code_shows_an_error_and_changes_nothing(account, client_for):
    client = client_for(account.owner)
    response = _post(client, account, "change_preview_seats", {"seats": "12", "promotion_code": "NOPE"})
    assert response.status_code == 422
    assert "This promotion code is not valid." in response.text
    assert not Discount.objects.exists()


def test_dashboard_estimate_includes_the_discount_and_until_when(account, client_for):
    discount_redeem(
        customer=account.customer,
        subscription=account.subscription,
        coupon_id=make_coupon(duration="repeating", periods=2).pk,
    )
    html = client_for(account.owner).get(reverse("portal:customer_dashboard", args=[account.customer.pk])).text
    assert 'data-testid="dashboard-discount"' in html
    # Team 100.00 + 5 × 10.00 = 150.00; 20 % off is 30.00
    assert "Includes your discount of $30.00 before tax: Launch 20 (20 % off), until" in html
    assert "$120.00" in html


def test_signup_page_with_a_bad_code_creates_nothing(client, db):
    from tests.factories import priced_package

    priced_package(slug="team", name="Team")
    response = client.post(
        reverse("portal:signup"),
        {
            "package": "team",
            "interval": "month",
            "seats": "5",
            "start": "subscribe",
            "company_name": "Initech",
            "country": "US",
            "region": "CA",
            "currency": "USD",
            "name": "Bill",
            "email": "bill@initech.test",
            "password": "tps-reports-2026!",
            "address_line1": "1 Initech Way",
            "city": "Austin",
            "postal_code": "73301",
            "promotion_code": "NOPE",
        },
    )
    assert response.status_code == 422
    assert "This promotion code is not valid." in response.text
    assert not Discount.objects.exists()
