"""No portal page runs more than 10 queries, and list pages do not grow with the number of rows they list."""

from datetime import timedelta
from itertools import count

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from billing.models import Invoice, PaymentMethod, TaxExemption
from portal.models import ApiKey
from subscriptions.models import Customer, Invitation, PackageComponent, Role, SeatAssignment, Subscription
from subscriptions.services.audit import audit_record
from tests.clock import today
from tests.factories import MembershipFactory, SkuFactory, UserFactory, priced_package
from tests.portal.conftest import make_account, make_invoice

pytestmark = pytest.mark.django_db

BUDGET = 10

CUSTOMER_PAGES = [
    "customer_dashboard",
    "enablement",
    "seats",
    "package",
    "invoices",
    "billing_details",
    "tax",
    "activity",
    "api_keys",
    "survey",
    "payment_methods",
]


@pytest.mark.parametrize("name", CUSTOMER_PAGES)
def test_customer_page_stays_within_ten_queries(account, client_for, django_assert_max_num_queries, name):
    make_invoice(account.customer)
    client = client_for(account.owner)
    url = reverse(f"portal:{name}", args=[account.customer.pk])
    client.get(url)  # first visit may create the billing profile and store the selected customer in the session
    with django_assert_max_num_queries(BUDGET):
        response = client.get(url)
    assert response.status_code == 200


def test_invoice_detail_stays_within_ten_queries(account, client_for, django_assert_max_num_queries):
    invoice = make_invoice(account.customer)
    client = client_for(account.owner)
    url = reverse("portal:invoice_detail", args=[account.customer.pk, invoice.pk])
    with django_assert_max_num_queries(BUDGET):
        assert client.get(url).status_code == 200


@pytest.mark.parametrize("name", ["pricing", "signup", "login", "password_reset"])
def test_public_page_stays_within_ten_queries(account, client, django_assert_max_num_queries, name):
    with django_assert_max_num_queries(BUDGET):
        assert client.get(reverse(f"portal:{name}")).status_code == 200


# --- with the demo data: a real catalog, invoice history, exemptions, every role --------------------------------------

DEMO_LOGINS = [
    ("owner@acme.test", "Acme Inc"),
    ("ap@acme.test", "Acme Inc"),
    ("dev@acme.test", "Acme Inc"),
    ("owner@globex.test", "Globex Corp"),
    ("owner@initech.test", "Initech GmbH"),
    ("owner@umbrella.test", "Umbrella LLC"),
]


def test_every_page_of_the_demo_stays_within_ten_queries(django_assert_max_num_queries):
    call_command("seed_demo", verbosity=0)
    for email, name in DEMO_LOGINS:
        client = Client()
        assert client.login(username=email, password="continuum-demo")
        customer = Customer.objects.get(name=name)
        urls = [reverse(f"portal:{page}", args=[customer.pk]) for page in [*CUSTOMER_PAGES, "pay_now"]]
        for invoice in Invoice.objects.filter(customer=customer, issued_at__isnull=False).order_by("-pk")[:2]:
            urls.append(reverse("portal:invoice_detail", args=[customer.pk, invoice.pk]))
            urls.append(reverse("portal:invoice_pdf", args=[customer.pk, invoice.pk]))
        exemption = TaxExemption.objects.filter(customer=customer).first()
        if exemption is not None:
            urls.append(reverse("portal:tax_certificate", args=[customer.pk, exemption.pk]))
        for url in urls:
            client.get(url)  # the first visit stores the chosen customer in the session
            with django_assert_max_num_queries(BUDGET, info=f"{email} {url}"):
                response = client.get(url)
            assert response.status_code in (200, 302, 403), (email, url, response.status_code)


# --- list pages are constant in the number of rows -----------------------------------------------------------------

_seq = count(1)


def _more_people(account, n=12):
    for i in (next(_seq) for _ in range(n)):
        user = UserFactory()
        MembershipFactory(customer=account.customer, user=user, role=Role.MEMBER if i % 3 else Role.BILLING_ADMIN)
        if i % 2:
            SeatAssignment.objects.create(subscription=account.subscription, user=user)
        Invitation.objects.create(
            customer=account.customer,
            email=f"invitee{i}@example.test",
            invited_by=account.owner,
            expires_at=timezone.now() + timedelta(days=7),
        )


def _more_activity(account, n=30):
    for i in range(n):
        audit_record(customer=account.customer, action="test.event", summary=f"Event {i}", actor=account.owner)


def _more_api_keys(account, n=12):
    for i in (next(_seq) for _ in range(n)):
        ApiKey.objects.create(
            customer=account.customer,
            name=f"Key {i}",
            prefix=f"ck_test_{i:04d}",
            key_hash=f"{i:064x}",
            created_by=account.owner,
        )


def _more_catalog(account, n=4):
    # More packages to change to and more add-ons, each with its own components and prices.
    current = account.subscription.package
    for i in (next(_seq) for _ in range(n)):
        alternative = priced_package(slug=f"alt-{i}", name=f"Alternative {i}", display_order=100 + i)
        current.change_targets.add(alternative)
        addon = priced_package(slug=f"addon-{i}", name=f"Add-on {i}", is_addon=True)
        PackageComponent.objects.get_or_create(package=addon, sku=SkuFactory(code=f"ADD-{i}", tax_category="services"))
        addon.addon_for.add(current)


def _more_invoices(account, n=15):
    for i in range(n):
        make_invoice(account.customer, status="paid" if i % 2 else "open")


def _more_payment_methods(account, n=6):
    for i in (next(_seq) for _ in range(n)):
        PaymentMethod.objects.create(
            customer=account.customer,
            stripe_payment_method_id=f"pm_test_{i}",
            brand="visa",
            last4=f"{4242 + i}",
            exp_month=12,
            exp_year=today().year + 4,
            is_default=False,
        )


@pytest.mark.usefixtures("page_cache_off")  # counts the page as computed
@pytest.mark.parametrize(
    "page,grow",
    [
        ("customer_dashboard", lambda a: (_more_people(a), _more_activity(a), _more_invoices(a))),
        ("seats", _more_people),
        ("activity", _more_activity),
        ("api_keys", _more_api_keys),
        ("package", _more_catalog),
        ("invoices", _more_invoices),
        ("payment_methods", _more_payment_methods),
    ],
    ids=["dashboard", "seats", "activity", "api_keys", "package", "invoices", "payment_methods"],
)
def test_list_page_query_count_does_not_grow_with_rows(account, client_for, django_assert_max_num_queries, page, grow):
    # given: one of everything, so every query the page can make is made
    make_invoice(account.customer)
    _more_people(account, n=1)
    _more_activity(account, n=1)
    _more_api_keys(account, n=1)
    _more_catalog(account, n=1)
    _more_payment_methods(account, n=1)
    client = client_for(account.owner)
    url = reverse(f"portal:{page}", args=[account.customer.pk])
    client.get(url)
    with django_assert_max_num_queries(BUDGET) as first:
        assert client.get(url).status_code == 200
    baseline = len(first.captured_queries)
    # when: many more rows
    PaymentMethod.objects.filter(customer=account.customer).delete()
    grow(account)
    # then: not one query more
    with django_assert_max_num_queries(baseline):
        assert client.get(url).status_code == 200
    assert Subscription.objects.filter(customer=account.customer).count() == 1


# --- change previews and confirms ----------------------------------------------------------------------------------


def _busy_subscription(account):
    """A subscription that gives a change everything to read: a live add-on, another one to add, a scheduled
    downgrade (a pending package change), packages to move to, and a billing address with tax."""
    from datetime import timedelta as _td

    from billing.services.profiles import billing_profile_update
    from subscriptions.models import Package, Price
    from subscriptions.services.changes import subscription_addon_add_apply, subscription_change_package_apply

    team = account.subscription.package
    if not Package.objects.filter(slug="business").exists():  # the catalog is shared by every account of a test
        business = priced_package(slug="business", name="Business")
        starter = priced_package(slug="starter", name="Starter")
        Price.objects.filter(package=starter).update(flat_amount_minor=5_000)  # cheaper: a downgrade waits
        team.change_targets.add(business, starter)
        for slug, name in (("premium-support", "Premium support"), ("extra-storage", "Extra storage")):
            addon = priced_package(slug=slug, name=name, is_addon=True)
            addon.addon_for.add(team, business, starter)
    billing_profile_update(
        customer=account.customer,
        legal_name=account.customer.name,
        address_line1="1 Main Street",
        city="San Francisco",
        region="CA",
        postal_code="94105",
        country="US",
        billing_emails=["ap@acme.test"],
    )
    from billing.models import TaxRate

    TaxRate.objects.get_or_create(
        country="US",
        region="CA",
        name="CA sales tax",
        defaults={
            "rate": "7.25",
            "tax_categories": ["saas"],
            "effective_from": (timezone.now() - _td(days=400)).date(),
        },
    )
    sub = account.subscription
    subscription_addon_add_apply(
        subscription_id=sub.pk, addon_slug="premium-support", expected_version=sub.version, actor=account.owner
    )
    sub.refresh_from_db()
    subscription_change_package_apply(
        subscription_id=sub.pk, package_slug="starter", expected_version=sub.version, actor=account.owner
    )
    sub.refresh_from_db()
    return sub


PREVIEWS = [
    ("seats", {"seats": "12"}),  # an increase: now, prorated
    ("seats", {"seats": "9"}),  # a decrease: at the period end
    ("package", {"package_slug": "business", "interval": ""}),  # an upgrade, replacing the scheduled downgrade
    ("package", {"package_slug": "team", "interval": "year"}),  # to annual billing, the add-on re-priced
    ("addon_add", {"addon_slug": "extra-storage"}),
    ("addon_remove", {"addon_slug": "premium-support"}),
    ("cancel", {"reason": "Too expensive for us"}),
]


@pytest.mark.parametrize("kind,data", PREVIEWS, ids=[f"{k}-{'-'.join(d.values())}" for k, d in PREVIEWS])
def test_change_preview_stays_within_ten_queries_and_does_not_grow(
    account, client_for, django_assert_max_num_queries, kind, data
):
    # given: a subscription with add-ons, a scheduled change and tax to work out
    sub = _busy_subscription(account)
    _more_catalog(account, n=1)
    client = client_for(account.owner)
    url = reverse(f"portal:change_preview_{kind}", args=[account.customer.pk])
    payload = {"subscription_id": sub.pk, **data}
    client.post(url, payload, headers={"HX-Request": "true"})
    # when / then: the preview a customer sees, within the page budget
    with django_assert_max_num_queries(BUDGET) as first:
        response = client.post(url, payload, headers={"HX-Request": "true"})
    assert response.status_code == 200, response.text
    assert "Due now" in response.text or "Credit" in response.text
    baseline = len(first.captured_queries)
    # and not one query more with a bigger catalog, more people and more invoices
    _more_catalog(account, n=4)
    _more_people(account)
    _more_invoices(account)
    # The catalog edit renewed the catalog token: the first seat preview after it reloads the per-package SKU
    # cache (one query, still within the budget); the steady figure is the one to compare.
    with django_assert_max_num_queries(BUDGET):
        assert client.post(url, payload, headers={"HX-Request": "true"}).status_code == 200
    with django_assert_max_num_queries(baseline):
        assert client.post(url, payload, headers={"HX-Request": "true"}).status_code == 200


def test_reactivate_preview_and_full_page_preview_stay_within_ten_queries(
    account, client_for, django_assert_max_num_queries
):
    from subscriptions.services.changes import subscription_cancel_apply

    sub = _busy_subscription(account)
    subscription_cancel_apply(subscription_id=sub.pk, reason="Budget", expected_version=sub.version, actor=None)
    client = client_for(account.owner)
    url = reverse("portal:change_preview_reactivate", args=[account.customer.pk])
    client.post(url, {"subscription_id": sub.pk}, headers={"HX-Request": "true"})
    with django_assert_max_num_queries(BUDGET):
        assert client.post(url, {"subscription_id": sub.pk}, headers={"HX-Request": "true"}).status_code == 200
    # Without JavaScript the preview is a whole page (base layout, customer switcher): still within the budget.
    url = reverse("portal:change_preview_seats", args=[account.customer.pk])
    with django_assert_max_num_queries(BUDGET):
        response = client.post(url, {"subscription_id": sub.pk, "seats": "12"})
    assert response.status_code == 200 and "<html" in response.text


def test_every_change_preview_of_the_demo_stays_within_ten_queries(django_assert_max_num_queries):
    from subscriptions.models import Package

    call_command("seed_demo", verbosity=0)
    for email, name in DEMO_LOGINS:
        if not email.startswith("owner@"):
            continue
        client = Client()
        assert client.login(username=email, password="continuum-demo")
        customer = Customer.objects.get(name=name)
        sub = Subscription.objects.filter(customer=customer).order_by("-pk").first()
        package = sub.package
        cases = [("seats", {"seats": sub.seats + 1}), ("seats", {"seats": sub.seats - 1}), ("cancel", {"reason": "x"})]
        cases += [("package", {"package_slug": t.slug}) for t in package.change_targets.all()]
        other = "year" if sub.interval == "month" else "month"
        cases.append(("package", {"package_slug": package.slug, "interval": other}))
        cases += [("addon_add", {"addon_slug": a.slug}) for a in Package.objects.filter(addon_for=package)]
        cases += [("addon_remove", {"addon_slug": a.package.slug}) for a in sub.addons.filter(ended_at__isnull=True)]
        for kind, data in cases:
            url = reverse(f"portal:change_preview_{kind}", args=[customer.pk])
            payload = {"subscription_id": sub.pk, **data}
            client.post(url, payload, headers={"HX-Request": "true"})
            with django_assert_max_num_queries(BUDGET, info=f"{email} {kind} {data}"):
                response = client.post(url, payload, headers={"HX-Request": "true"})
            assert response.status_code in (200, 422), (email, kind, data, response.status_code)


def _confirm_fields(html: str) -> dict:
    import re

    return dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', html))


@pytest.mark.parametrize(
    "kind,data",
    [("seats", {"seats": "12"}), ("seats", {"seats": "9"}), ("cancel", {"reason": "Too expensive for us"})],
    ids=["seats-up-invoiced-now", "seats-down-at-period-end", "cancel"],
)
def test_change_confirm_query_count_does_not_grow(account, client_for, django_assert_max_num_queries, kind, data):
    # A confirm writes (the change, its audit row, the seat ledger or scheduled change, the enablement run and, for
    # an amount due now, the invoice): it is not held to the 10-query page budget (docs/portal.md), but it must not
    # grow with the catalog, the people or the invoices.
    def confirm(acct) -> int:
        sub = _busy_subscription(acct)
        client = client_for(acct.owner)
        preview_url = reverse(f"portal:change_preview_{kind}", args=[acct.customer.pk])
        preview = client.post(preview_url, {"subscription_id": sub.pk, **data}, headers={"HX-Request": "true"})
        fields = _confirm_fields(preview.text)
        apply_url = reverse(f"portal:change_apply_{kind}", args=[acct.customer.pk])
        with django_assert_max_num_queries(80) as captured:
            response = client.post(apply_url, fields)
        assert response.status_code == 302, response.text
        return len(captured.captured_queries)

    def invoice_history(acct, n):
        # Issued before (so the confirm's invoice is not a new customer's first, held for review), and numbered
        # apart from the series the confirm's own invoice is numbered in.
        for i in range(n):
            invoice = make_invoice(acct.customer, status="paid" if i % 2 else "open")
            Invoice.objects.filter(pk=invoice.pk).update(number=f"OLD-{invoice.pk:06d}", series="OLD")

    invoice_history(account, 1)
    small = confirm(account)
    grown = make_account("Globex Corp", package=account.subscription.package)
    _more_catalog(grown, n=4)
    _more_people(grown, n=4)  # assigned seats stay below the 9 the decrease goes to
    invoice_history(grown, 15)
    assert confirm(grown) <= small
