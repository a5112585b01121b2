"""The dashboard: package, seats, status, next invoice, enablement, activity and hints, in constant queries."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import Membership, Role, SeatAssignment, SubscriptionAddon, SubscriptionStatus
from subscriptions.services.audit import audit_record
from tests.factories import MembershipFactory, PriceFactory, UserFactory, priced_package

pytestmark = pytest.mark.django_db


def _dashboard(client, account):
    return client.get(reverse("portal:customer_dashboard", args=[account.customer.pk]))


def test_dashboard_shows_package_seats_next_invoice_and_hints_to_an_owner(account, client_for):
    addon_package = priced_package(slug="premium-support", name="Premium support", is_addon=True)
    SubscriptionAddon.objects.create(
        subscription=account.subscription,
        package=addon_package,
        price=addon_package.prices.first(),
        flat_amount_minor=2_500,
        started_at=timezone.now(),
    )
    page = _dashboard(client_for(account.owner), account)
    assert page.status_code == 200
    text = page.text
    assert "Team" in text and "Premium support" in text
    assert "Seats: 2 of 10 in use" in text
    assert '<progress id="seats-' in text and 'max="10" value="2"' in text
    assert "8 seats on Team unassigned" in text
    # 100.00 flat + 5 seats above the 5 included at 10.00 + 25.00 add-on
    assert "$175.00" in text
    assert account.subscription.current_period_end.strftime("%-d %b %Y") in text
    assert "Subscribed to Team" in text  # recent activity


def test_dashboard_for_a_member_hides_money_activity_and_hints(account, client_for):
    page = _dashboard(client_for(account.member), account)
    assert page.status_code == 200
    assert "You hold a seat." in page.text
    assert "Estimated amount" not in page.text
    assert "Recent activity" not in page.text
    assert "unassigned" not in page.text


def test_dashboard_shows_trial_days_left(account, client_for):
    sub = account.subscription
    sub.status = SubscriptionStatus.TRIALING
    sub.trial_end = timezone.now() + timedelta(days=9, hours=3)
    sub.save()
    assert "10 days left in your trial" in _dashboard(client_for(account.owner), account).text


def test_dashboard_past_due_shows_a_pay_link_to_billing_roles_only(account, client_for):
    account.subscription.status = SubscriptionStatus.PAST_DUE
    account.subscription.save()
    owner_page = _dashboard(client_for(account.billing_admin), account)
    assert "A payment is overdue" in owner_page.text
    member_page = _dashboard(client_for(account.member), account)
    assert "A payment is overdue" in member_page.text
    assert "Pay now" not in member_page.text


def test_dashboard_in_euros_for_a_german_customer_uses_german_formatting(client_for):
    from tests.portal.conftest import make_account

    package = priced_package(slug="team", name="Team")
    PriceFactory  # noqa: B018 - prices come from priced_package in both currencies
    account = make_account("Initech GmbH", package=package, country="DE", currency="EUR")
    assert "150,00\u00a0€" in _dashboard(client_for(account.owner), account).text


def test_dashboard_query_count_is_constant_in_members_and_activity(account, client_for, django_assert_max_num_queries):
    client = client_for(account.owner)
    with django_assert_max_num_queries(12) as few:  # 10 + 2 for subscriptions.selectors.enablement_status
        _dashboard(client, account)
    baseline = len(few.captured_queries)
    for n in range(15):
        user = UserFactory()
        MembershipFactory(customer=account.customer, user=user, role=Role.MEMBER)
        SeatAssignment.objects.create(subscription=account.subscription, user=user) if n < 8 else None
        audit_record(customer=account.customer, action="test.event", summary=f"Event {n}")
    with django_assert_max_num_queries(baseline):
        page = _dashboard(client, account)
    assert "Seats: 10 of 10 in use" in page.text
    assert Membership.objects.filter(customer=account.customer).count() == 18


def test_enablement_panel_polls_until_everything_is_active(account, client_for, monkeypatch):
    from portal.views import dashboard_data

    states = {"value": "pending"}

    def fake(*, customer):
        return dashboard_data.Enablement(
            items=[dashboard_data.EnablementItem(name="Seats", state=states["value"], label=states["value"])]
        )

    monkeypatch.setattr(dashboard_data, "enablement_for", fake)
    client = client_for(account.member)
    url = reverse("portal:enablement", args=[account.customer.pk])
    polling = client.get(url, headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in polling.text
    states["value"] = "active"
    done = client.get(url, headers={"HX-Request": "true"})
    assert "hx-trigger" not in done.text
    assert "Everything is active." in done.text
