"""The card form in a real Chromium: Stripe.js (localstripe's fake, loaded from settings.STRIPE_JS_URL) mounts the
card Element, confirms the SetupIntent in the browser, and the page records the saved card."""

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from billing.models import PaymentMethod
from subscriptions.models import Role
from tests.factories import CustomerFactory, MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _signed_in(page, live_server, user) -> None:
    client = Client()
    client.force_login(user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
    page.context.add_cookies([{"name": cookie.key, "value": cookie.value, "url": live_server.url}])


def test_card_form_saves_card_through_stripe_js(page, live_server, stripe_server):
    membership = MembershipFactory(role=Role.BILLING_ADMIN, customer=CustomerFactory(name="Initech"))
    _signed_in(page, live_server, membership.user)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(live_server.url + reverse("portal:payment_methods", args=[membership.customer_id]))
    page.get_by_placeholder("number").fill("4242424242424242")
    page.get_by_placeholder("exp_month").fill("12")
    page.get_by_placeholder("exp_year").fill("34")
    page.get_by_placeholder("cvc").fill("123")
    page.get_by_placeholder("postal_code").fill("94105")
    page.get_by_role("button", name="Save card").click()

    page.get_by_text("Card saved: Visa ending in 4242").wait_for()
    method = PaymentMethod.objects.get(customer=membership.customer)
    assert (method.last4, method.is_default) == ("4242", True)
    assert not errors


def test_card_form_shows_decline_without_saving(page, live_server, stripe_server):
    membership = MembershipFactory(role=Role.OWNER, customer=CustomerFactory(name="Umbrella"))
    _signed_in(page, live_server, membership.user)

    page.goto(live_server.url + reverse("portal:payment_methods", args=[membership.customer_id]))
    page.get_by_placeholder("number").fill("4000000000000002")
    page.get_by_placeholder("exp_month").fill("12")
    page.get_by_placeholder("exp_year").fill("34")
    page.get_by_placeholder("cvc").fill("123")
    page.get_by_role("button", name="Save card").click()

    page.get_by_text("Your card was declined.").wait_for()
    assert not PaymentMethod.objects.filter(customer=membership.customer).exists()
