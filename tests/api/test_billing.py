"""Billing over the API: profile, invoices (draft/held hidden from customers), PDF, credit notes, tax exemptions."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import InvoiceKind, TaxExemption
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from tests.api.conftest import ROLES, as_user, assert_error, caller
from tests.clock import in_years
from tests.factories import BillingProfileFactory, TaxRateFactory, UserFactory

EXPIRES = in_years(3)  # a certificate's last valid day, years from today (tests/clock.py)

pytestmark = pytest.mark.django_db

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    settings.PRIVATE_STORAGE_ROOT = tmp_path / "private"
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def staff(db):
    # Staff read through the API as far as their back-office group allows (subscriptions/policy.py).
    from django.contrib.auth.models import Group

    user = UserFactory(email="staff@continuum.test", is_staff=True)
    user.groups.add(Group.objects.get(name="Billing staff"))
    return user


@pytest.fixture
def invoices(acme, staff):
    """An issued invoice and a draft for Acme."""
    TaxRateFactory()
    BillingProfileFactory(customer=acme.customer, billing_emails=["ap@acme.test"])
    issued = invoice_draft_create(
        customer=acme.customer,
        currency="USD",
        kind=InvoiceKind.MANUAL,
        lines=[DraftLine(description="Onboarding", unit_amount_minor=10_000)],
    )
    issued = invoice_approve_and_issue(invoice_id=issued.pk, actor=staff)
    draft = invoice_draft_create(
        customer=acme.customer,
        currency="USD",
        kind=InvoiceKind.MANUAL,
        lines=[DraftLine(description="Not yet", unit_amount_minor=500)],
    )
    issued.refresh_from_db()
    return {"issued": issued, "draft": draft}


def base(account) -> str:
    return f"/api/v1/customers/{account.customer.pk}"


@pytest.mark.parametrize("who", ["owner", "billing_admin", "key:admin", "key:billing", "key:read_only"])
def test_invoices_list_hides_drafts_from_customers(acme, invoices, who):
    body = caller(acme, who).get(f"{base(acme)}/invoices/").json()
    assert [i["id"] for i in body["results"]] == [invoices["issued"].pk]
    invoice = body["results"][0]
    assert invoice["number"] == invoices["issued"].number
    assert invoice["status"] in ("open", "paid")
    assert invoice["total"] == invoice["subtotal"] + invoice["tax"]
    assert_error(caller(acme, who).get(f"{base(acme)}/invoices/{invoices['draft'].pk}/"), 404, "not_found")


def test_invoices_list_staff_sees_drafts(acme, invoices, staff):
    ids = {i["id"] for i in as_user(staff).get(f"{base(acme)}/invoices/").json()["results"]}
    assert ids == {invoices["issued"].pk, invoices["draft"].pk}


def test_invoices_list_filters(acme, invoices):
    client = as_user(acme.owner)
    issued = invoices["issued"]
    assert client.get(f"{base(acme)}/invoices/?status=void").json()["count"] == 0
    assert client.get(f"{base(acme)}/invoices/?status={issued.status}").json()["count"] == 1
    day = issued.issued_at.date().isoformat()
    assert client.get(f"{base(acme)}/invoices/?issued_from={day}&issued_to={day}").json()["count"] == 1
    assert client.get(f"{base(acme)}/invoices/?issued_from=2999-01-01").json()["count"] == 0
    assert_error(client.get(f"{base(acme)}/invoices/?issued_from=yesterday"), 400, "invalid", "issued_from")
    assert_error(client.get(f"{base(acme)}/invoices/?status=bogus"), 400, "invalid_choice", "status")


def test_invoice_detail_has_lines(acme, invoices):
    body = as_user(acme.billing_admin).get(f"{base(acme)}/invoices/{invoices['issued'].pk}/").json()
    [line] = body["lines"]
    assert (line["description"], line["amount"], line["quantity"]) == ("Onboarding", 10_000, 1)
    for name in ("id", "number", "status", "currency", "subtotal", "tax", "total", "amount_paid", "amount_due"):
        assert name in body
    for name in ("issued_at", "due_on", "po_number", "lines"):
        assert name in body


def test_invoice_pdf_is_a_pdf(acme, invoices):
    response = as_user(acme.owner).get(f"{base(acme)}/invoices/{invoices['issued'].pk}/pdf/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert b"".join(response.streaming_content if response.streaming else [response.content]).startswith(b"%PDF")


def test_invoices_forbidden_for_members(acme, invoices):
    client = as_user(acme.member)
    assert_error(client.get(f"{base(acme)}/invoices/"), 403, "permission_denied")
    assert_error(client.get(f"{base(acme)}/invoices/{invoices['issued'].pk}/pdf/"), 403, "permission_denied")
    assert_error(client.get(f"{base(acme)}/billing-profile/"), 403, "permission_denied")


@pytest.mark.parametrize("who", ROLES)
def test_billing_objects_of_other_customer_are_404(acme, globex, invoices, who):
    client = caller(globex, who)
    issued = invoices["issued"]
    for path in (
        f"{base(acme)}/invoices/",
        f"{base(acme)}/invoices/{issued.pk}/",
        f"{base(acme)}/invoices/{issued.pk}/pdf/",
        f"{base(acme)}/credit-notes/",
        f"{base(acme)}/tax-exemptions/",
        f"{base(acme)}/billing-profile/",
        f"{base(acme)}/entitlements/",
        # Acme's invoice id under Globex's own customer is just as unknown (members get 403 first: no leak either)
    ):
        assert_error(client.get(path), 404, "not_found")
    response = client.get(f"{base(globex)}/invoices/{issued.pk}/")
    assert response.status_code in (403, 404)
    if who not in ("member",):
        assert_error(response, 404, "not_found")
    assert_error(client.patch(f"{base(acme)}/billing-profile/", {"city": "X"}, format="json"), 404, "not_found")


def test_billing_profile_get_and_patch(acme):
    client = as_user(acme.billing_admin)
    body = client.get(f"{base(acme)}/billing-profile/").json()
    assert body["legal_name"] == "Acme Ltd" and body["country"] == "US"
    response = client.patch(
        f"{base(acme)}/billing-profile/",
        {
            "address_line1": "1 Main St",
            "city": "Springfield",
            "postal_code": "94105",
            "billing_emails": ["AP@acme.test"],
        },
        format="json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["city"] == "Springfield" and body["billing_emails"] == ["ap@acme.test"]


def test_billing_profile_patch_errors(acme):
    client = as_user(acme.owner)
    assert_error(
        client.patch(f"{base(acme)}/billing-profile/", {"tax_id_valid": True}, format="json"), 400, "unknown_field"
    )
    assert_error(
        client.patch(f"{base(acme)}/billing-profile/", {"country": "USA"}, format="json"), 400, field="country"
    )
    response = client.patch(f"{base(acme)}/billing-profile/", {"country": "DE", "tax_id": "DE123"}, format="json")
    assert_error(response, 422, field="tax_id")
    assert_error(
        caller(acme, "key:read_only").patch(f"{base(acme)}/billing-profile/", {"city": "X"}, format="json"),
        403,
        "permission_denied",
    )


# Issue 15, hole 2: PATCH {"payment_terms_days": 365} and {"currency": "EUR"} answered 200 and stored the value.
@pytest.mark.parametrize("who", ["owner", "billing_admin", "key:admin", "key:billing"])
@pytest.mark.parametrize("field,value", [("payment_terms_days", 365), ("currency", "EUR")])
def test_billing_profile_patch_refuses_staff_only_fields(acme, who, field, value):
    from billing.models import BillingProfile

    client = caller(acme, who)
    client.get(f"{base(acme)}/billing-profile/")
    before = BillingProfile.objects.filter(customer=acme.customer).values_list(field, flat=True).first()
    response = client.patch(f"{base(acme)}/billing-profile/", {field: value, "city": "Elsewhere"}, format="json")
    assert_error(response, 403, "permission_denied", field)
    profile = BillingProfile.objects.filter(customer=acme.customer).first()
    assert profile is None or (getattr(profile, field), profile.city) == (before, profile.city) != (value, "Elsewhere")


def test_billing_profile_round_trip_of_unchanged_staff_fields_is_accepted(acme):
    client = as_user(acme.owner)
    body = client.get(f"{base(acme)}/billing-profile/").json()
    editable = {k: body[k] for k in ("legal_name", "payment_terms_days", "currency", "city")}
    response = client.patch(f"{base(acme)}/billing-profile/", {**editable, "city": "Springfield"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["city"] == "Springfield"


def test_tax_exemption_upload_list_detail(acme):
    client = as_user(acme.billing_admin)
    response = client.post(
        f"{base(acme)}/tax-exemptions/",
        {
            "certificate": SimpleUploadedFile("cert.pdf", PDF_BYTES, content_type="application/pdf"),
            "jurisdiction": "US-CA",
            "certificate_number": "CA-123",
            "expires_on": EXPIRES.isoformat(),
            "exemption_type": "resale",
        },
        format="multipart",
        HTTP_IDEMPOTENCY_KEY="upload-1",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["jurisdiction"], body["certificate_number"]) == ("submitted", "US-CA", "CA-123")
    assert body["expires_on"] == EXPIRES.isoformat() and body["decision_reason"] == ""
    assert client.get(f"{base(acme)}/tax-exemptions/").json()["count"] == 1
    assert client.get(f"{base(acme)}/tax-exemptions/{body['id']}/").json()["id"] == body["id"]
    assert TaxExemption.objects.count() == 1


def test_tax_exemption_upload_rejects_non_pdf(acme):
    response = as_user(acme.owner).post(
        f"{base(acme)}/tax-exemptions/",
        {
            "certificate": SimpleUploadedFile("cert.pdf", b"MZ\x90\x00not a pdf", content_type="application/pdf"),
            "jurisdiction": "US-CA",
            "certificate_number": "CA-1",
            "expires_on": EXPIRES.isoformat(),
        },
        format="multipart",
    )
    assert_error(response, 422, "certificate_invalid")
    assert not TaxExemption.objects.exists()


def test_tax_exemption_of_other_customer_is_404(acme, globex):
    client = as_user(acme.owner)
    client.post(
        f"{base(acme)}/tax-exemptions/",
        {
            "certificate": SimpleUploadedFile("c.pdf", PDF_BYTES),
            "jurisdiction": "US-CA",
            "certificate_number": "1",
            "expires_on": EXPIRES.isoformat(),
        },
        format="multipart",
    )
    exemption = TaxExemption.objects.get()
    assert_error(as_user(globex.owner).get(f"{base(globex)}/tax-exemptions/{exemption.pk}/"), 404, "not_found")
    assert_error(as_user(globex.owner).get(f"{base(acme)}/tax-exemptions/{exemption.pk}/"), 404, "not_found")


def test_credit_notes_list_empty(acme):
    body = as_user(acme.owner).get(f"{base(acme)}/credit-notes/").json()
    assert body["count"] == 0 and body["results"] == []
