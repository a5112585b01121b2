from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.models import BillingProfile, InvoiceStatus, TaxRate
from billing.services.billing_run import draft_chunk
from billing.services.invoices import invoice_finalize
from billing.services.profiles import billing_profile_update
from billing.services.tax import REVERSE_CHARGE_WORDING, TaxContext, tax_amount, tax_compute
from tests.billing.conftest import established
from tests.factories import BillingProfileFactory, CustomerFactory, SubscriptionFactory, TaxRateFactory

pytestmark = pytest.mark.django_db


def _rate(pk, name, rate, categories=("saas",)):
    tax_rate = TaxRate(country="US", region="CA", name=name, rate=Decimal(rate), tax_categories=list(categories))
    tax_rate.pk = pk
    return tax_rate


def test_tax_compute_rounds_once_per_rate_half_up():
    # given two lines taxed at 7.25 %: 10.07 and 0.03 → taxable 10.10 → 0.73225 → 0.73 (per line it would be 0.73+0.00)
    rates = [_rate(1, "CA sales tax", "7.25")]
    context = TaxContext(country="US", region="CA", tax_date=date(2026, 11, 1), rates=rates)
    # when
    result = tax_compute(lines=[(1007, "saas"), (3, "saas")], context=context)
    # then
    assert result.subtotal_minor == 1010
    assert result.tax_lines[0].taxable_minor == 1010
    assert result.tax_minor == 73
    assert result.total_minor == 1083


def test_tax_amount_half_up_on_exact_half():
    # 1000 × 0.05 % = 0.5 minor units → rounds up to 1; −0.5 rounds away from zero to −1
    assert tax_amount(taxable_minor=1000, rate_percent=Decimal("0.05")) == 1
    assert tax_amount(taxable_minor=-1000, rate_percent=Decimal("0.05")) == -1


def test_tax_compute_applies_rates_only_to_their_categories():
    context = TaxContext(
        country="US", region="CA", tax_date=date(2026, 11, 1), rates=[_rate(1, "CA sales tax", "7.25", ["saas"])]
    )
    result = tax_compute(lines=[(10_000, "saas"), (50_000, "services")], context=context)
    assert result.tax_minor == 725
    assert result.line_rates[1] == (Decimal(0), "")


@given(
    amounts=st.lists(st.integers(min_value=-100_000, max_value=10_000_000), min_size=1, max_size=8),
    rate=st.decimals(min_value=0, max_value=30, places=4),
)
def test_tax_compute_property_per_rate_rounding_within_half_unit(amounts, rate):
    context = TaxContext(country="US", region="CA", tax_date=date(2026, 11, 1), rates=[_rate(1, "T", rate)])
    result = tax_compute(lines=[(a, "saas") for a in amounts], context=context)
    exact = Decimal(sum(amounts)) * rate / 100
    assert abs(Decimal(result.tax_minor) - exact) <= Decimal("0.5")
    assert result.total_minor == sum(amounts) + result.tax_minor


def test_invoice_draft_uses_region_rate_and_copies_it_on_lines(subscription, ca_tax):
    TaxRateFactory(region="NY", name="NY sales tax", rate=Decimal("8.875"))
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    invoice = subscription.invoices.get(pk=invoice_id)
    assert invoice.subtotal_minor == 15_000
    assert invoice.tax_minor == 1088  # 150.00 × 7.25 % = 10.875 → 10.88
    assert invoice.total_minor == 16_088
    assert [(t.name, t.rate, t.tax_amount_minor) for t in invoice.tax_lines.all()] == [
        ("CA sales tax", Decimal("7.2500"), 1088)
    ]
    assert {(line.tax_name, line.tax_rate) for line in invoice.lines.all()} == {("CA sales tax", Decimal("7.2500"))}


def test_tax_rate_outside_its_effective_dates_is_not_applied(subscription):
    TaxRateFactory(effective_from=date(2020, 1, 1), effective_to=date(2026, 11, 1))
    TaxRateFactory(name="CA sales tax 2026", rate=Decimal("8.00"), effective_from=date(2026, 11, 1))
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    invoice = subscription.invoices.get(pk=invoice_id)
    assert [t.name for t in invoice.tax_lines.all()] == ["CA sales tax 2026"]
    assert invoice.tax_minor == 1200


def _de_customer(tax_id=""):
    customer = CustomerFactory(name="Initech", legal_name="Initech GmbH", country="DE", region="", currency="EUR")
    BillingProfileFactory(customer=customer, city="Berlin", postal_code="10115", region="", address_line1="Str. 1")
    if tax_id:
        billing_profile_update(customer=customer, tax_id=tax_id)
    TaxRateFactory(country="DE", region="", name="VAT DE", rate=Decimal("19"))
    return customer


def test_reverse_charge_for_eu_business_with_valid_vat_id(staff):
    customer = _de_customer("DE136695976")
    subscription = SubscriptionFactory(customer=customer)
    established(customer, staff)
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    invoice = invoice_finalize(invoice_id=invoice_id)
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.tax_minor == 0
    assert invoice.reverse_charge is True
    assert invoice.reverse_charge_wording == REVERSE_CHARGE_WORDING.format(vat_id="DE136695976")
    assert invoice.customer_tax_ids == ["DE136695976"]


def test_eu_customer_without_vat_id_pays_vat(staff):
    customer = _de_customer()
    subscription = SubscriptionFactory(customer=customer)
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    invoice = subscription.invoices.get(pk=invoice_id)
    assert invoice.reverse_charge is False
    assert invoice.tax_minor == 2850  # 150.00 × 19 %


def test_no_reverse_charge_when_seller_is_established_in_the_same_member_state(settings):
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    customer = _de_customer("DE136695976")
    subscription = SubscriptionFactory(customer=customer)
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    invoice = subscription.invoices.get(pk=invoice_id)
    assert invoice.reverse_charge is False
    assert invoice.tax_minor == 2850
    assert BillingProfile.objects.get(customer=customer).tax_id_valid
