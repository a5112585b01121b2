"""Hostile input and private answers over the API: places against ISO 3166, certificate numbers, empty filters,
and Cache-Control: no-store on everything a credential sees."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from billing.models import BillingProfile, InvoiceKind, TaxExemption
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from tests.api.conftest import as_key, as_user, assert_error
from tests.factories import BillingProfileFactory, TaxRateFactory, UserFactory

pytestmark = pytest.mark.django_db

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    settings.PRIVATE_STORAGE_ROOT = tmp_path / "private"
    settings.MEDIA_ROOT = tmp_path / "media"


def base(account):
    return f"/api/v1/customers/{account.customer.pk}"


def _upload(client, account, **fields):
    data = {
        "certificate": SimpleUploadedFile("cert.pdf", PDF_BYTES, content_type="application/pdf"),
        "jurisdiction": "US-CA",
        "certificate_number": "CA-123",
        "expires_on": (timezone.localdate() + timedelta(days=365)).isoformat(),
        "exemption_type": "resale",
        **fields,
    }
    return client.post(f"{base(account)}/tax-exemptions/", data, format="multipart")


@pytest.mark.parametrize("jurisdiction", ["XX", "US-ZZ", "ZZ-NY"])
def test_tax_exemption_jurisdiction_outside_iso_3166_is_refused(acme, jurisdiction):
    response = _upload(as_user(acme.owner), acme, jurisdiction=jurisdiction)

    assert response.status_code in (400, 422), response.content
    assert response.json()["error"]["field"] == "jurisdiction" or "jurisdiction" in response.json()["error"]["field"]
    assert not TaxExemption.objects.exists()


def test_tax_exemption_real_subdivisions_are_accepted(acme):
    assert _upload(as_user(acme.owner), acme, jurisdiction="CA-QC").status_code == 201


@pytest.mark.parametrize(
    "number",
    ["CRLF\r\nX-Injected: yes", 'Q"; filename="evil.html', "CA-\u202eFDP.exe", "tab\there", "x" * 81, "   "],
)
def test_tax_exemption_certificate_number_must_be_printable_and_bounded(acme, number):
    response = _upload(as_user(acme.owner), acme, certificate_number=number)

    assert response.status_code in (400, 422), response.content
    assert response.json()["error"]["field"] == "certificate_number"
    assert not TaxExemption.objects.exists()


@pytest.mark.parametrize("country", ["XX", "ZZ", "U1"])
def test_billing_profile_country_outside_iso_3166_is_refused(acme, country):
    response = as_user(acme.owner).patch(f"{base(acme)}/billing-profile/", {"country": country}, format="json")

    assert response.status_code in (400, 422), response.content
    assert response.json()["error"]["field"] == "country"
    assert not BillingProfile.objects.filter(customer=acme.customer, country=country).exists()


def test_billing_profile_region_must_be_a_subdivision_of_the_country(acme):
    client = as_user(acme.owner)

    refused = client.patch(f"{base(acme)}/billing-profile/", {"country": "US", "region": "ZZ"}, format="json")
    accepted = client.patch(f"{base(acme)}/billing-profile/", {"country": "US", "region": "NY"}, format="json")
    region_alone = client.patch(f"{base(acme)}/billing-profile/", {"region": "QC"}, format="json")

    assert_error(refused, 422, field="region")
    assert accepted.status_code == 200
    assert_error(region_alone, 422, field="region")
    assert BillingProfile.objects.get(customer=acme.customer).region == "NY"


@pytest.fixture
def issued_invoice(acme):
    TaxRateFactory()
    BillingProfileFactory(customer=acme.customer, billing_emails=["ap@acme.test"])
    staff = UserFactory(email="staff@continuum.test", is_staff=True)
    draft = invoice_draft_create(
        customer=acme.customer,
        currency="USD",
        kind=InvoiceKind.MANUAL,
        lines=[DraftLine(description="Onboarding", unit_amount_minor=10_000)],
    )
    return invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)


def test_invoice_list_empty_status_filter_is_refused(acme, issued_invoice):
    response = as_user(acme.owner).get(f"{base(acme)}/invoices/?status=")
    assert_error(response, 400, field="status")


def _no_store(response) -> bool:
    return "no-store" in response.get("Cache-Control", "")


def test_api_responses_to_a_credential_are_no_store(acme, issued_invoice):
    client = as_user(acme.owner)

    me = client.get("/api/v1/me/")
    invoices = client.get(f"{base(acme)}/invoices/")
    pdf = client.get(f"{base(acme)}/invoices/{issued_invoice.pk}/pdf/")
    by_key = as_key(acme).get(f"{base(acme)}/")
    not_found = client.get(f"{base(acme)}/invoices/999999/")

    assert [r.status_code for r in (me, invoices, pdf, by_key, not_found)] == [200, 200, 200, 200, 404]
    assert all(_no_store(r) for r in (me, invoices, pdf, by_key, not_found))
    assert pdf["Content-Disposition"] == f'attachment; filename="{issued_invoice.number}.pdf"'


def test_token_response_is_no_store(client, acme, password):
    response = client.post("/api/v1/auth/token/", {"email": "owner@acme.test", "password": password}, format="json")

    assert response.status_code == 201
    assert _no_store(response)


def test_public_catalog_stays_cacheable(client, package):
    response = client.get("/api/v1/packages/")
    assert response.status_code == 200 and not _no_store(response)


@pytest.mark.parametrize("seats", ["١٢", "²", True, 12.0, "1" * 5000, "12abc"])
def test_seat_preview_numbers_must_be_ascii_integers(acme, seats):
    from subscriptions.services.subscriptions import subscription_create
    from tests.factories import priced_package

    subscription = subscription_create(
        customer=acme.customer, package=priced_package(slug="team", name="Team"), interval="month", seats=5, actor=None
    )
    response = as_user(acme.owner).post(
        f"{base(acme)}/subscriptions/{subscription.pk}/seat-changes/preview/", {"seats": seats}, format="json"
    )

    assert_error(response, 400, field="seats")
