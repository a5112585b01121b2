"""Billing details and tax exemption pages."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from billing.models import BillingProfile, TaxExemption
from tests.clock import in_years

EXPIRES = in_years(3)  # a certificate's last valid day, years from today (tests/clock.py)

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n% a certificate\n"


def _details(account):
    return reverse("portal:billing_details", args=[account.customer.pk])


def _tax(account):
    return reverse("portal:tax", args=[account.customer.pk])


def _profile_post(**overrides):
    data = {
        "legal_name": "Acme Incorporated",
        "address_line1": "1 Market Street",
        "address_line2": "",
        "city": "San Francisco",
        "region": "CA",
        "postal_code": "94105",
        "country": "US",
        "billing_emails": "ap@acme.test, cfo@acme.test",
        "standing_po_number": "PO-778",
        "tax_id": "",
        "invoice_language": "en",
        "change_billing_mode": "invoice_now",
    }
    data.update(overrides)
    return data


def test_billing_details_save_and_show(account, client_for):
    client = client_for(account.billing_admin)
    response = client.post(_details(account), _profile_post(), follow=True)
    assert "Billing details saved" in response.text
    profile = BillingProfile.objects.get(customer=account.customer)
    assert profile.billing_emails == ["ap@acme.test", "cfo@acme.test"]
    assert profile.standing_po_number == "PO-778"
    assert 'value="ap@acme.test, cfo@acme.test"' in response.text


def test_billing_details_invalid_vat_id_is_explained_next_to_the_field_and_input_kept(account, client_for):
    client = client_for(account.owner)
    response = client.post(_details(account), _profile_post(country="DE", region="", tax_id="DE123"))
    assert response.status_code == 422
    assert 'id="f-tax_id-error"' in response.text
    assert 'value="DE123"' in response.text and 'value="1 Market Street"' in response.text
    assert not BillingProfile.objects.filter(customer=account.customer, tax_id="DE123").exists()


def test_billing_details_bad_email_is_refused(account, client_for):
    response = client_for(account.owner).post(_details(account), _profile_post(billing_emails="not-an-address"))
    assert response.status_code == 422
    assert 'id="f-billing_emails-error"' in response.text


def test_tax_exemption_submit_shows_status_and_certificate_download(account, client_for):
    client = client_for(account.billing_admin)
    page = client.get(_tax(account))
    assert "no tax exemption on file" in page.text
    response = client.post(
        _tax(account),
        {
            "jurisdictions": "US-CA",
            "exemption_type": "nonprofit",
            "certificate_number": "CA-EX-1",
            "expires_on": EXPIRES.isoformat(),
            "certificate": SimpleUploadedFile("cert.pdf", PDF, content_type="application/pdf"),
        },
        follow=True,
    )
    assert "Certificate received" in response.text
    assert "Submitted, awaiting review" in response.text
    exemption = TaxExemption.objects.get(customer=account.customer)
    download = client.get(reverse("portal:tax_certificate", args=[account.customer.pk, exemption.pk]))
    assert download.status_code == 200 and download.content == PDF


def test_tax_exemption_rejects_a_file_that_is_not_a_certificate_and_keeps_the_input(account, client_for):
    response = client_for(account.owner).post(
        _tax(account),
        {
            "jurisdictions": "US-CA",
            "exemption_type": "resale",
            "certificate_number": "R-9",
            "expires_on": EXPIRES.isoformat(),
            "certificate": SimpleUploadedFile("cert.pdf", b"MZ not a pdf", content_type="application/pdf"),
        },
    )
    assert response.status_code == 422
    assert 'id="f-certificate-error"' in response.text
    assert 'value="R-9"' in response.text
    assert not TaxExemption.objects.exists()


def test_tax_exemption_missing_expiry_is_explained(account, client_for):
    response = client_for(account.owner).post(
        _tax(account), {"jurisdictions": "US-CA", "exemption_type": "resale", "certificate_number": "R-9"}
    )
    assert response.status_code == 422 and "expiry date" in response.text


def test_another_customers_certificate_is_404(account, other_account, client_for):
    client_for(other_account.owner).post(
        _tax(other_account),
        {
            "jurisdictions": "US-CA",
            "exemption_type": "resale",
            "certificate_number": "X",
            "expires_on": EXPIRES.isoformat(),
            "certificate": SimpleUploadedFile("c.pdf", PDF),
        },
    )
    theirs = TaxExemption.objects.get(customer=other_account.customer)
    url = reverse("portal:tax_certificate", args=[account.customer.pk, theirs.pk])
    assert client_for(account.owner).get(url).status_code == 404
