"""Portal forms and downloads under hostile input: ISO 3166 places, certificate numbers, safe download headers, and
Cache-Control: no-store on every page a signed-in person sees."""

import re
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from billing.models import BillingProfile, TaxExemption

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n% a certificate\n"


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    settings.PRIVATE_STORAGE_ROOT = tmp_path / "private"


def _tax_post(**overrides):
    return {
        "jurisdictions": "US-CA",
        "exemption_type": "resale",
        "certificate_number": "R-9",
        "expires_on": (timezone.localdate() + timedelta(days=365)).isoformat(),
        "certificate": SimpleUploadedFile("cert.pdf", PDF, content_type="application/pdf"),
        **overrides,
    }


@pytest.mark.parametrize("jurisdictions", ["US-ZZ", "XX", "US-CA, XX"])
def test_tax_form_refuses_places_outside_iso_3166(account, client_for, jurisdictions):
    response = client_for(account.owner).post(
        reverse("portal:tax", args=[account.customer.pk]), _tax_post(jurisdictions=jurisdictions)
    )

    assert response.status_code == 422
    assert 'id="f-jurisdictions-error"' in response.text
    assert not TaxExemption.objects.exists()


@pytest.mark.parametrize("number", ["CRLF\r\nX-Injected: yes", 'Q"; filename="evil.html', "A\u202eB", "9" * 81])
def test_tax_form_refuses_unprintable_or_overlong_certificate_numbers(account, client_for, number):
    response = client_for(account.owner).post(
        reverse("portal:tax", args=[account.customer.pk]), _tax_post(certificate_number=number)
    )

    assert response.status_code == 422
    assert 'id="f-certificate_number-error"' in response.text
    assert not TaxExemption.objects.exists()


@pytest.mark.parametrize("number", ["CRLF\r\nX-Injected: yes", 'Q"; filename="evil.html', "CA-\u202eFDP.exe"])
def test_certificate_stored_before_validation_downloads_with_one_safe_filename(account, client_for, number):
    # given a row written before certificate numbers were validated
    exemption = TaxExemption(
        customer=account.customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number=number,
        expires_on=timezone.localdate() + timedelta(days=30),
        certificate_content_type="application/pdf",
        certificate_size=len(PDF),
        certificate_sha256="0" * 64,
        original_filename="cert.pdf",
    )
    exemption.certificate.save("certificate", ContentFile(PDF), save=False)
    exemption.save()

    # when the customer downloads it
    response = client_for(account.owner).get(
        reverse("portal:tax_certificate", args=[account.customer.pk, exemption.pk])
    )

    # then: one attachment filename of safe ASCII, no injected header, never cached
    assert response.status_code == 200 and response.content == PDF
    disposition = response["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="tax-certificate-[A-Za-z0-9._-]+\.pdf"', disposition), disposition
    assert "X-Injected" not in response.headers
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("country", ["XX", "ZZ"])
def test_billing_details_form_refuses_a_country_outside_iso_3166(account, client_for, country):
    from tests.portal.test_billing_pages import _profile_post

    response = client_for(account.owner).post(
        reverse("portal:billing_details", args=[account.customer.pk]), _profile_post(country=country, region="")
    )

    assert response.status_code == 422
    assert 'id="f-country-error"' in response.text
    assert not BillingProfile.objects.filter(customer=account.customer, country=country).exists()


def test_billing_details_form_refuses_a_state_that_does_not_exist(account, client_for):
    from tests.portal.test_billing_pages import _profile_post

    response = client_for(account.owner).post(
        reverse("portal:billing_details", args=[account.customer.pk]), _profile_post(country="US", region="ZZ")
    )

    assert response.status_code == 422
    assert 'id="f-region-error"' in response.text


def test_signed_in_pages_are_no_store_public_pages_are_not(account, client_for, client):
    signed_in = client_for(account.owner)
    pages = [
        signed_in.get(reverse("portal:customer_dashboard", args=[account.customer.pk])),
        signed_in.get(reverse("portal:invoices", args=[account.customer.pk])),
        signed_in.get(reverse("portal:api_keys", args=[account.customer.pk])),
        signed_in.post(reverse("portal:api_keys", args=[account.customer.pk]), {"name": "CI", "role": "read_only"}),
    ]

    assert [p.status_code for p in pages] == [200, 200, 200, 201]
    assert all("no-store" in p["Cache-Control"] for p in pages)
    assert "no-store" not in client.get(reverse("portal:pricing")).get("Cache-Control", "")


def test_certificate_file_name_is_stored_without_control_or_bidi_characters(account, client_for):
    upload = SimpleUploadedFile("cert\r\nX-Injected: 1\u202e.pdf", PDF, content_type="application/pdf")

    response = client_for(account.owner).post(
        reverse("portal:tax", args=[account.customer.pk]), _tax_post(certificate=upload)
    )

    assert response.status_code == 302
    name = TaxExemption.objects.get(customer=account.customer).original_filename
    assert name.isprintable() and '"' not in name
