"""The dashboard: package, seats, status, next invoice, enablement, activity and hints, in constant queries."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import Invoice, InvoiceKind, PendingInvoiceItem
from subscriptions.models import (
    Membership,
    PackageComponent,
    Price,
    Role,
    SeatAssignment,
    SkuKind,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.services.audit import audit_record
from tests.factories import (
    BillingProfileFactory,
    MembershipFactory,
    PriceFactory,
    SkuFactory,
    TaxRateFactory,
    UserFactory,
    priced_package,
)
from tests.portal.conftest import make_invoice

pytestmark = pytest.mark.django_db


def _dashboard(client, account):
    return client.get(reverse("portal:customer_dashboard", args=[account.customer.pk]))


def _invoiced_this_period(account):
    """The billing run has invoiced the current period: the next invoice is the one at the period end."""
    sub = account.subscription
    invoice = make_invoice(account.customer)
    Invoice.objects.filter(pk=invoice.pk).update(
        subscription=sub,
        kind=InvoiceKind.REGULAR,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
    )
    return invoice


def _addon(account, *, amount_minor=2_500, tax_category="saas"):
    addon_package = priced_package(slug="premium-support", name="Premium support", is_addon=True)
    sku = SkuFactory(code="SUP-PREM-M", kind=SkuKind.RECURRING_FLAT, tax_category=tax_category)
    addon_package.components.all().delete()
    PackageComponent.objects.create(package=addon_package, sku=sku)
    return SubscriptionAddon.objects.create(
        subscription=account.subscription,
        package=addon_package,
        price=addon_package.prices.first(),
        flat_amount_minor=amount_minor,
        started_at=timezone.now(),
    )


def test_dashboard_shows_package_seats_next_invoice_and_hints_to_an_owner(account, client_for):
    _invoiced_this_period(account)
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
    assert "$175.00" in text and "Before tax (add a billing address to see tax)" in text  # no billing profile yet
    assert account.subscription.current_period_end.strftime("%-d %b %Y") in text
    assert "Subscribed to Team" in text  # recent activity


def test_dashboard_for_a_member_hides_money_activity_and_hints(account, client_for):
    page = _dashboard(client_for(account.member), account)
    assert page.status_code == 200
    assert "You hold a seat." in page.text
    assert "Next invoice" not in page.text and "estimate" not in page.text
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


def test_dashboard_query_count_is_constant_in_members_invoices_and_activity(
    account, client_for, django_assert_max_num_queries
):
    # The heaviest dashboard: an owner (activity) of a taxed customer with an add-on and pending changes.
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    _invoiced_this_period(account)
    _addon(account)
    PendingInvoiceItem.objects.create(
        customer=account.customer,
        subscription=account.subscription,
        description="Team — 2 additional seats (prorated)",
        amount_minor=800,
        currency="USD",
    )
    client = client_for(account.owner)
    _dashboard(client, account)  # the first visit stores the chosen customer in the session
    with django_assert_max_num_queries(10) as few:
        _dashboard(client, account)
    baseline = len(few.captured_queries)
    for n in range(15):
        user = UserFactory()
        MembershipFactory(customer=account.customer, user=user, role=Role.MEMBER)
        SeatAssignment.objects.create(subscription=account.subscription, user=user) if n < 8 else None
        audit_record(customer=account.customer, action="test.event", summary=f"Event {n}")
        make_invoice(account.customer, status="paid" if n % 2 else "open")
    with django_assert_max_num_queries(baseline):
        page = _dashboard(client, account)
    assert "Seats: 10 of 10 in use" in page.text
    assert Membership.objects.filter(customer=account.customer).count() == 18
    assert "Incl. $" in page.text  # the estimate with tax was computed
    assert "Plus $8.00 before tax for changes made this period" in page.text


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


# --- next invoice estimate -------------------------------------------------------------------------------------------


def test_dashboard_estimate_includes_california_sales_tax(account, client_for):
    # given: a Californian billing address, CA sales tax 7.25 % on SaaS, this period already invoiced
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    _invoiced_this_period(account)
    # when
    text = _dashboard(client_for(account.billing_admin), account).text
    # then: 100.00 flat + 5 billed seats × 10.00 = 150.00, tax 10.875 → 10.88
    assert "Estimated total" in text
    assert "$160.88" in text and "Incl. $10.88 CA sales tax" in text
    assert "This is an estimate from today" in text
    assert account.subscription.current_period_end.strftime("%-d %b %Y") in text


def test_dashboard_estimate_taxes_each_line_by_its_own_category(account, client_for):
    # Premium support is a service, which California does not tax: only the 150.00 of SaaS is taxed.
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    _invoiced_this_period(account)
    _addon(account, amount_minor=2_500, tax_category="services")
    text = _dashboard(client_for(account.owner), account).text
    assert "$185.88" in text and "Incl. $10.88 CA sales tax" in text


def test_dashboard_estimate_for_a_tax_exempt_customer_shows_no_tax(account, client_for):
    from django.core.files.base import ContentFile

    from billing.services.exemptions import tax_exemption_approve, tax_exemption_submit

    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    _invoiced_this_period(account)
    exemption = tax_exemption_submit(
        customer=account.customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number="CA-RESALE-1",
        expires_on=timezone.localdate() + timedelta(days=400),
        certificate=ContentFile(b"%PDF-1.4 certificate", name="certificate.pdf"),
        actor=account.owner,
    )
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=UserFactory(is_staff=True))
    text = _dashboard(client_for(account.owner), account).text
    assert "$150.00" in text and "No tax: tax exempt" in text
    assert "CA sales tax" not in text


def test_dashboard_estimate_for_a_reverse_charge_customer_shows_no_vat(client_for):
    from billing.services.profiles import billing_profile_update
    from tests.portal.conftest import make_account

    account = make_account(
        "Initech GmbH", package=priced_package(slug="team", name="Team"), country="DE", currency="EUR"
    )
    billing_profile_update(
        customer=account.customer,
        legal_name="Initech GmbH",
        address_line1="Friedrichstraße 100",
        city="Berlin",
        postal_code="10117",
        country="DE",
        tax_id="DE136695976",
    )
    TaxRateFactory(country="DE", region="", name="VAT DE", rate="19", tax_categories=["saas", "services"])
    _invoiced_this_period(account)
    text = _dashboard(client_for(account.owner), account).text
    assert "150,00\u00a0€" in text and "No VAT: reverse charge" in text


def test_dashboard_estimate_just_subscribed_is_this_periods_first_invoice_with_set_up(account, client_for):
    # Subscribed a moment ago: the next billing run invoices the current period, with the one-time set-up fee.
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    Price.objects.filter(pk=account.subscription.price_id).update(setup_amount_minor=50_000)
    text = _dashboard(client_for(account.owner), account).text
    assert f"<dt>Next invoice</dt><dd>{timezone.now():%-d %b %Y}</dd>" in text
    # 150.00 + 500.00 set-up (its SKU falls back to the plan's SaaS category): tax 7.25 % of 650.00 = 47.13
    assert "$697.13" in text and "Includes the one-time set-up fee of $500.00" in text


def test_dashboard_estimate_after_a_trial_includes_set_up(account, client_for):
    sub = account.subscription
    sub.status = SubscriptionStatus.TRIALING
    sub.trial_end = sub.current_period_end
    sub.save()
    Price.objects.filter(pk=sub.price_id).update(setup_amount_minor=50_000)
    text = _dashboard(client_for(account.owner), account).text
    assert "Trial ends" in text and "Includes the one-time set-up fee of $500.00" in text
    assert "$650.00" in text  # no billing address yet: before tax
