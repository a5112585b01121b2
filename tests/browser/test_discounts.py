"""Promotion codes in a real Chromium (issue 22): a code on a seat change shows its discount line, the discounted
total and when it ends before confirming; an invalid code is refused in place and changes nothing.

Saves `seats-discount-preview.png` (README screenshot table; `make screenshots` writes it to docs/screenshots/)."""

import pytest
from django.core.cache import cache
from django.core.management import call_command

from billing.models import Discount
from subscriptions.models import Subscription
from tests.billing.discount_support import make_code, make_coupon
from tests.browser.test_portal_flows import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


@pytest.fixture
def demo_with_code(db):
    call_command("seed_demo", verbosity=0)
    make_code(make_coupon(name="Launch offer", percent="20", duration="repeating", periods=3), code="LAUNCH20")


def test_seat_change_with_a_promotion_code_previews_the_discount_then_applies_it(
    live_server, page, demo_with_code, screenshot
):
    sign_in(page, live_server, "owner@acme.test")
    page.get_by_role("link", name="Seats").first.click()
    page.fill("#seat-count", "12")
    page.get_by_text("Total due now").wait_for()
    # an invalid code: refused in the preview, nothing to confirm
    page.fill("#seat-promotion-code", "NOT-A-CODE")
    page.get_by_role("button", name="Preview").click()
    page.get_by_text("This promotion code is not valid.").wait_for()
    assert page.get_by_role("button", name="Confirm seats").count() == 0
    # the real code, typed in lower case
    page.fill("#seat-promotion-code", "launch20")
    page.get_by_role("button", name="Preview").click()
    discount_line = page.get_by_test_id("discount-line")
    discount_line.wait_for()
    assert "Discount: Launch offer (20 % off)" in discount_line.inner_text()
    assert "until" in page.get_by_test_id("discount").inner_text()
    assert "after the discount" in page.get_by_test_id("next-recurring").inner_text()
    screenshot(page, "seats-discount-preview")
    assert not Discount.objects.exists()  # a preview redeems nothing
    page.get_by_role("button", name="Confirm seats").click()
    page.get_by_role("heading", name="How easy was that?").wait_for()
    assert Subscription.objects.get(customer__name="Acme Inc").seats == 12
    discount = Discount.objects.get()
    assert discount.promotion_code.code == "LAUNCH20" and discount.customer.name == "Acme Inc"
