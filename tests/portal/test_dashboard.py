"""The dashboard: package, seats, status, next invoice, enablement, activity and hints, in constant queries."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing.models import Invoice, InvoiceKind, PendingInvoiceItem
from portal.views.dashboard_data import trial_days_change_at, trial_days_left
from subscriptions.models import (
    Membership,
    PackageComponent,
    Price,
    Role,
    SeatAssignment,
    SkuKind,
    Subscription,
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
    assert account.subscription.current_period_end.strftime("%b %-d, %Y") in text
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
    text = _dashboard(client_for(account.owner), account).text
    assert "150,00\u00a0€" in text
    # and dates day first, as English is written in Germany (a US customer reads "Mar 31, 2026")
    next_invoice = re.search(r"<dt>Next invoice</dt><dd>([^<]*)</dd>", text)[1]
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} 20\d\d", next_invoice), next_invoice


@pytest.mark.usefixtures("page_cache_off")  # counts the page as computed
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


@pytest.mark.usefixtures("page_cache_off")  # fakes the provisioning state outside the database
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
    assert account.subscription.current_period_end.strftime("%b %-d, %Y") in text


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
    assert f"<dt>Next invoice</dt><dd>{timezone.now():%b %-d, %Y}</dd>" in text
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


# --- enablement in the customer's words ------------------------------------------------------------------------------


def test_dashboard_names_features_the_way_the_catalog_labels_them(client_for):
    from django.core.management import call_command
    from django.test import Client

    from subscriptions.models import Customer

    # given the demo: Globex on Business (single sign-on, 1M API calls, storage), provisioned
    from subscriptions.services.provisioning import entitlements_reconcile

    call_command("seed_demo", verbosity=0)
    globex = Customer.objects.get(name="Globex Corp")
    entitlements_reconcile(customer_id=globex.pk, trigger="test")  # (the worker does this after the seed commits)
    client = Client()
    assert client.login(username="owner@globex.test", password="continuum-demo")
    # when the owner opens the dashboard and the live enablement panel
    for url in (
        reverse("portal:customer_dashboard", args=[globex.pk]),
        reverse("portal:enablement", args=[globex.pk]),
    ):
        text = client.get(url).text
        # then each feature reads as the catalog says it, with its limit
        assert "API calls per month: 1,000,000" in text
        assert "Storage (GB): 100" in text
        assert "Single sign-on" in text and "Audit log" in text
        assert "Api calls" not in text and "Storage gb" not in text


# --- recent activity: when things happened, amounts as the customer writes them -------------------------------------


def test_recent_activity_shows_a_late_recorded_payment_on_the_day_it_was_paid_in_dollars(account, client_for):
    from billing.services.invoices import invoice_apply_payment

    # given an open invoice of $119.00, paid by bank transfer 40 days ago and entered today, and a seat change today
    invoice = make_invoice(account.customer)
    paid_at = timezone.now() - timedelta(days=40)
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=11_900, paid_at=paid_at, reference="wire 42")
    audit_record(customer=account.customer, action="subscription.seats_changed", summary="Change from 10 to 12 seats")
    # when the owner opens the dashboard
    text = re.sub(r"\s+", " ", _dashboard(client_for(account.owner), account).text)
    # then the payment reads in dollars, dated the day it was paid, after today's change
    recent = text[text.index("Recent activity") :]
    paid_day = timezone.localtime(paid_at).strftime("%b %-d, %Y")
    paid_time = f"{timezone.localtime(paid_at):%-I:%M %p}"  # "2:05 PM", as the customer's (US) locale writes it
    assert f"{paid_day}, {paid_time}</time> — Payment of $119.00 on {invoice.number}" in recent
    assert "USD" not in recent
    assert recent.index("Change from 10 to 12 seats") < recent.index("Payment of $119.00")
    # and the activity log says when it was recorded
    log = re.sub(
        r"\s+", " ", client_for(account.owner).get(reverse("portal:activity", args=[account.customer.pk])).text
    )
    row = log[log.index(paid_day) :]
    assert row.index("recorded") < row.index("Payment of $119.00")
    assert f'recorded <time datetime="{timezone.localtime(timezone.now()):%Y-%m-%d}' in row


def test_recent_activity_shows_a_bank_transfer_in_euros_as_a_german_customer_writes_them(client_for):
    from billing.services.payments import payment_record_manual
    from tests.portal.conftest import make_account

    account = make_account("Initech GmbH", package=priced_package(slug="team"), country="DE", currency="EUR")
    invoice = make_invoice(account.customer, total=123_450)
    payment_record_manual(invoice_id=invoice.pk, amount_minor=123_450, reference="SEPA 7781", actor=None)
    text = _dashboard(client_for(account.owner), account).text
    assert f"Bank transfer of 1.234,50\u00a0€ recorded for {invoice.number}" in text
    assert "EUR" not in text[text.index("Recent activity") :]


# --- an unpaid invoice past its due date --------------------------------------------------------------------------


def _overdue(account, *, days_late=10, total=11_900):
    """An open invoice whose due date passed `days_late` days ago (issued with 30 days to pay)."""
    return make_invoice(account.customer, total=total, issued_at=timezone.now() - timedelta(days=30 + days_late))


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


@pytest.mark.parametrize("role", ["owner", "billing_admin"])
def test_dashboard_warns_billing_roles_of_an_overdue_invoice_with_links(account, client_for, role):
    # given an active subscription (bank transfer: no Stripe) and an invoice of $119.00 ten days past due
    invoice = _overdue(account)
    # when an owner or a billing admin opens the dashboard
    response = _dashboard(client_for(account.user(role)), account)
    # then they read which invoice, how much and since when, with a link to it and to the bank details to pay it
    due = invoice.due_on.strftime("%b %-d, %Y")
    assert f"Invoice {invoice.number} of $119.00 was due on {due}." in _text(response)
    assert "Please pay it by bank transfer." in _text(response)
    html = response.text
    assert f'href="{reverse("portal:invoice_detail", args=[account.customer.pk, invoice.pk])}"' in html
    assert (
        f'href="{reverse("portal:invoice_pay", args=[account.customer.pk, invoice.pk])}">Bank transfer details' in html
    )
    assert "Pay now" not in html
    assert "A payment is overdue" not in html  # the subscription is active: one banner, the invoice's


def test_dashboard_overdue_invoice_offers_to_pay_online_when_stripe_is_configured(account, client_for, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_continuum"
    invoice = _overdue(account)
    html = _dashboard(client_for(account.owner), account).text
    pay = reverse("portal:invoice_pay", args=[account.customer.pk, invoice.pk])
    assert f'href="{pay}">Pay now</a>' in html
    assert "Bank transfer details" not in html


def test_dashboard_overdue_invoice_is_not_shown_to_members(account, client_for):
    # Decision: a member cannot see or pay invoices and their service is not affected, so they are not told (they
    # are told, neutrally, when the subscription itself is past due: test_dashboard_past_due_shows_a_pay_link…).
    invoice = _overdue(account)
    text = _text(_dashboard(client_for(account.member), account))
    assert invoice.number not in text and "was due on" not in text and "overdue" not in text


def test_dashboard_names_the_oldest_overdue_invoice_and_counts_the_others(account, client_for):
    oldest = _overdue(account, days_late=40, total=5_000)
    _overdue(account, days_late=10)
    _overdue(account, days_late=5)
    make_invoice(account.customer)  # open, due in 30 days: not overdue
    make_invoice(account.customer, status="paid", issued_at=timezone.now() - timedelta(days=90))  # paid
    response = _dashboard(client_for(account.owner), account)
    text = _text(response)
    assert f"Invoice {oldest.number} of $50.00 was due on {oldest.due_on:%b %-d, %Y}." in text
    assert "2 more invoices are overdue too." in text
    assert f'href="{reverse("portal:invoices", args=[account.customer.pk])}?status=open"' in response.text


@pytest.mark.parametrize(
    "invoice_fields",
    [
        {"issued_at": timezone.now() - timedelta(days=30)},  # due today: not late yet
        {"status": "paid", "issued_at": timezone.now() - timedelta(days=60)},  # late, but paid
        {"status": "void", "issued_at": timezone.now() - timedelta(days=60)},  # voided: nothing is owed
    ],
    ids=["due-today", "paid", "void"],
)
def test_dashboard_has_no_overdue_warning_when_nothing_is_late(account, client_for, invoice_fields):
    make_invoice(account.customer, **invoice_fields)
    assert 'data-testid="overdue-invoice"' not in _dashboard(client_for(account.owner), account).text


def test_dashboard_overdue_warning_and_past_due_subscription_make_one_banner(account, client_for):
    invoice = _overdue(account)
    account.subscription.status = SubscriptionStatus.PAST_DUE
    account.subscription.save()
    text = _text(_dashboard(client_for(account.owner), account))
    assert f"Invoice {invoice.number} of $119.00 was due on" in text
    assert "Your service continues for now; please settle it." in text
    assert "A payment is overdue" not in text


def test_dashboard_overdue_warning_without_a_live_subscription(account, client_for, django_assert_max_num_queries):
    # A customer whose subscription ended still owes the invoice: the warning does not hang on a live subscription.
    invoice = _overdue(account)
    account.subscription.status = SubscriptionStatus.ENDED
    account.subscription.save()
    client = client_for(account.owner)
    _dashboard(client, account)
    with django_assert_max_num_queries(10):
        text = _text(_dashboard(client, account))
    assert f"Invoice {invoice.number} of $119.00 was due on" in text


@pytest.mark.usefixtures("page_cache_off")  # counts the page as computed
def test_dashboard_overdue_warning_costs_no_query_and_stays_constant(
    account, client_for, django_assert_max_num_queries
):
    # the heaviest owner dashboard (tax estimate, activity), with an overdue invoice
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    _overdue(account)
    client = client_for(account.owner)
    _dashboard(client, account)
    with django_assert_max_num_queries(10) as few:
        assert "was due on" in _dashboard(client, account).text
    for days_late in range(1, 16):
        _overdue(account, days_late=days_late)
        make_invoice(account.customer, status="paid")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert "15 more invoices are overdue too." in _text(_dashboard(client, account))
    # and a member's dashboard does not pay for it at all
    member = client_for(account.member)
    _dashboard(member, account)
    with django_assert_max_num_queries(7):
        _dashboard(member, account)


def test_demo_umbrella_owner_is_warned_of_the_overdue_invoice(client_for):
    from django.core.management import call_command

    from billing.models import InvoiceStatus
    from subscriptions.models import Customer

    call_command("seed_demo", verbosity=0)
    umbrella = Customer.objects.get(name="Umbrella LLC")
    [late] = Invoice.objects.filter(
        customer=umbrella, status=InvoiceStatus.OPEN, due_on__lt=timezone.localdate()
    )  # the demo's unpaid one
    owner = Membership.objects.get(customer=umbrella, role=Role.OWNER).user
    response = client_for(owner).get(reverse("portal:customer_dashboard", args=[umbrella.pk]))
    text = _text(response)
    assert f"Invoice {late.number} of $" in text and f"was due on {late.due_on:%b %-d, %Y}." in text
    # no dunning on bank transfer: the subscription stayed active, and the warning is still there
    assert umbrella.subscriptions.get().status == SubscriptionStatus.ACTIVE


# A pinned instant in the past (a leap day at 00:10); the property draws every "now" as an offset from it, so it
# crosses month ends of 28–31 days, a leap day and the 1st at 00:10 without depending on today.
TRIAL_ANCHOR = datetime(2024, 2, 29, 0, 10, tzinfo=UTC)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    since_anchor=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)),
    left=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40)),
    later=st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3)),
)
def test_a_trials_days_left_hold_until_the_instant_the_dashboard_is_told_they_change(since_anchor, left, later):
    """The kept dashboard's `valid_until`: the days left are the same at every instant up to `trial_days_change_at`
    and one fewer right after it; with 0 days left they never change by the clock."""
    now = TRIAL_ANCHOR + since_anchor
    trial = Subscription(status=SubscriptionStatus.TRIALING, trial_end=now + left)
    days = trial_days_left(trial, now)
    change = trial_days_change_at(trial, now)
    if days == 0:
        assert change is None and trial_days_left(trial, now + later) == 0
        return
    assert change >= now
    assert trial_days_left(trial, change) == days
    assert trial_days_left(trial, min(change, now + later)) == days
    assert trial_days_left(trial, change + timedelta(microseconds=1)) == days - 1
