"""The dashboard's next-invoice estimate is cached (billing/estimates.py, issue 18) and never stale: every change that
alters the next invoice changes what the dashboard shows, and the page's query count stays constant either way."""

import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from billing.models import Invoice, InvoiceKind, TaxRate
from billing.services.exemptions import tax_exemption_approve, tax_exemption_submit
from billing.services.profiles import billing_profile_update
from subscriptions.models import Price, Role, SeatAssignment, Sku, SkuKind
from subscriptions.services.audit import audit_record
from subscriptions.services.changes import subscription_change_package_apply, subscription_change_seats_apply
from tests.factories import BillingProfileFactory, MembershipFactory, TaxRateFactory, UserFactory, priced_package
from tests.portal.conftest import make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def _invoiced_this_period(account):
    sub = account.subscription
    invoice = make_invoice(account.customer)
    Invoice.objects.filter(pk=invoice.pk).update(
        subscription=sub,
        kind=InvoiceKind.REGULAR,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
    )


@pytest.fixture
def taxed(account):
    """A Californian customer (CA sales tax 7.25 % on SaaS) whose current period is invoiced: the next invoice is
    100.00 flat + 5 billed seats × 10.00 = 150.00 + 10.88 tax."""
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    _invoiced_this_period(account)
    return account


def _estimate(client, account) -> str:
    text = client.get(reverse("portal:customer_dashboard", args=[account.customer.pk])).text
    found = re.search(r"Estimated total.*?(\$[\d,.]+)", text, re.S)
    assert found, "no estimate on the dashboard"
    return found.group(1)


def _tax_queries(queries) -> list[str]:
    return [q["sql"] for q in queries if "billing_taxrate" in q["sql"] or "subscriptions_packagecomponent" in q["sql"]]


def test_a_second_visit_reads_the_estimate_from_the_cache(taxed, client_for, django_assert_max_num_queries):
    client = client_for(taxed.owner)
    _estimate(client, taxed)  # the first visit stores the chosen customer in the session
    cache.clear()
    with django_assert_max_num_queries(10) as cold:
        assert _estimate(client, taxed) == "$160.88"
    assert len(_tax_queries(cold.captured_queries)) == 2  # the SKU tax categories and the tax rates
    with django_assert_max_num_queries(len(cold.captured_queries) - 2) as warm:
        assert _estimate(client, taxed) == "$160.88"
    assert _tax_queries(warm.captured_queries) == []


def test_a_seat_change_changes_the_estimate(taxed, client_for):
    client = client_for(taxed.owner)
    assert _estimate(client, taxed) == "$160.88"
    sub = taxed.subscription
    subscription_change_seats_apply(subscription_id=sub.pk, seats=12, expected_version=sub.version, actor=taxed.owner)
    # 100.00 + 7 billed seats × 10.00 = 170.00, tax 12.325 → 12.33
    assert _estimate(client, taxed) == "$182.33"


def test_a_package_change_changes_the_estimate(taxed, client_for):
    business = priced_package(slug="business", name="Business")
    Price.objects.filter(package=business).update(flat_amount_minor=30_000)
    taxed.subscription.package.change_targets.add(business)
    client = client_for(taxed.owner)
    assert _estimate(client, taxed) == "$160.88"
    sub = taxed.subscription
    subscription_change_package_apply(
        subscription_id=sub.pk, package_slug="business", expected_version=sub.version, actor=taxed.owner
    )
    sub.refresh_from_db()
    assert sub.package_id == business.pk
    # 300.00 + 5 billed seats × 10.00 = 350.00, tax 25.375 → 25.38
    assert _estimate(client, taxed) == "$375.38"


def test_a_new_tax_exemption_changes_the_estimate(taxed, client_for):
    client = client_for(taxed.owner)
    assert _estimate(client, taxed) == "$160.88"
    exemption = tax_exemption_submit(
        customer=taxed.customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number="CA-RESALE-1",
        expires_on=timezone.localdate() + timedelta(days=400),
        certificate=ContentFile(b"%PDF-1.4 certificate", name="certificate.pdf"),
        actor=taxed.owner,
    )
    assert _estimate(client, taxed) == "$160.88"  # submitted, not approved: still taxed
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=UserFactory(is_staff=True))
    assert _estimate(client, taxed) == "$150.00"


def test_moving_the_billing_profile_changes_the_estimate(taxed, client_for):
    TaxRateFactory(region="NY", name="NY sales tax", rate="4.0000")
    client = client_for(taxed.owner)
    assert _estimate(client, taxed) == "$160.88"
    billing_profile_update(
        customer=taxed.customer, address_line1="1 Main St", city="Albany", region="NY", postal_code="12207"
    )
    assert _estimate(client, taxed) == "$156.00"  # 150.00 + 4 % NY sales tax


def test_a_tax_rate_or_catalog_edit_changes_the_estimate(taxed, client_for):
    client = client_for(taxed.owner)
    assert _estimate(client, taxed) == "$160.88"
    rate = TaxRate.objects.get(region="CA")
    rate.rate = "10.0000"
    rate.save()
    assert _estimate(client, taxed) == "$165.00"
    # the seat SKU becomes a service, which the CA rate does not tax: only the 100.00 flat fee is taxed
    seat_sku = Sku.objects.get(kind=SkuKind.RECURRING_PER_SEAT)
    seat_sku.tax_category = "services"
    seat_sku.save()
    assert _estimate(client, taxed) == "$160.00"


def test_the_uncached_dashboard_is_within_budget_and_constant_in_rows(taxed, client_for, django_assert_max_num_queries):
    client = client_for(taxed.owner)
    _estimate(client, taxed)  # the first visit stores the chosen customer in the session
    cache.clear()
    with django_assert_max_num_queries(10) as cold:
        _estimate(client, taxed)
    for n in range(12):
        user = UserFactory()
        MembershipFactory(customer=taxed.customer, user=user, role=Role.MEMBER)
        if n < 6:
            SeatAssignment.objects.create(subscription=taxed.subscription, user=user)
        audit_record(customer=taxed.customer, action="test.event", summary=f"Event {n}")
        make_invoice(taxed.customer, status="paid" if n % 2 else "open")
    cache.clear()
    with django_assert_max_num_queries(len(cold.captured_queries)):
        assert _estimate(client, taxed) == "$160.88"


def test_the_uncached_dashboard_of_a_customer_with_exemptions_is_within_budget(
    taxed, client_for, django_assert_max_num_queries
):
    """The cold corner: the first dashboard after a process start or a catalog edit (no package categories cached)
    of a billing role whose customer holds exemptions runs the SKU categories, exemption and tax-rate queries on top
    of the page's own — still within 10, because the enablement panel reads entitlements and runs in one query."""
    reviewer = UserFactory(is_staff=True)
    for region, number in (("US-NY", "NY-1"), ("US-TX", "TX-1")):  # exempt elsewhere: California still taxes
        exemption = tax_exemption_submit(
            customer=taxed.customer,
            jurisdictions=[region],
            exemption_type="resale",
            certificate_number=number,
            expires_on=timezone.localdate() + timedelta(days=400),
            certificate=ContentFile(b"%PDF-1.4 certificate", name="certificate.pdf"),
            actor=taxed.owner,
        )
        tax_exemption_approve(exemption_id=exemption.pk, reviewer=reviewer)
    client = client_for(taxed.owner)
    _estimate(client, taxed)  # the first visit stores the chosen customer in the session
    cache.clear()
    with django_assert_max_num_queries(10) as cold:
        assert _estimate(client, taxed) == "$160.88"
    assert any("billing_taxexemption" in q["sql"] for q in cold.captured_queries)
    assert len(_tax_queries(cold.captured_queries)) == 2
