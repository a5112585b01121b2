"""Billing fixtures: a Californian customer with a complete billing profile, CA sales tax 7.25 % on SaaS, and a
Team subscription (100.00 flat + 5 additional seats × 10.00 = 150.00 a month, in the month that contains now)."""

import pytest
from django.core.files.base import ContentFile

from billing.models import InvoiceKind
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from tests.clock import in_years
from tests.factories import (
    BillingProfileFactory,
    CustomerFactory,
    MembershipFactory,
    SubscriptionFactory,
    TaxRateFactory,
    UserFactory,
)

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
EXE_BYTES = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 64


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    settings.PRIVATE_STORAGE_ROOT = tmp_path / "private"
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.PRIVATE_STORAGE_ROOT


@pytest.fixture
def staff(db):
    return UserFactory(email="billing-staff@continuum.test", is_staff=True)


@pytest.fixture
def ca_tax(db):
    return TaxRateFactory()


@pytest.fixture
def customer(db):
    customer = CustomerFactory(name="Acme", legal_name="Acme Incorporated", country="US", region="CA")
    BillingProfileFactory(customer=customer, billing_emails=["ap@acme.test"])
    return customer


@pytest.fixture
def owner(customer):
    return MembershipFactory(customer=customer, user=UserFactory(email="owner@acme.test")).user


@pytest.fixture
def subscription(customer):
    return SubscriptionFactory(customer=customer)


def established(customer, staff) -> None:
    """Give `customer` an issued invoice so the "first invoice of a new customer" check no longer applies."""
    invoice = invoice_draft_create(
        customer=customer,
        currency=customer.currency,
        kind=InvoiceKind.MANUAL,
        lines=[DraftLine(description="Earlier services", unit_amount_minor=100)],
    )
    invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)


def certificate(data: bytes = PDF_BYTES, name: str = "certificate.pdf") -> ContentFile:
    return ContentFile(data, name=name)


# A certificate's expiry (its last valid day) comfortably after today, whatever today is (tests/clock.py).
FUTURE = in_years(2)


# localstripe on 127.0.0.1 for the Stripe payment tests (tests/billing/stripe_support.py).
from tests.billing.stripe_support import stripe_server, stripe_server_session  # noqa: E402,F401
