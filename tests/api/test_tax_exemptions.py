"""Tax exemptions over the API (issue 9 contract): `jurisdiction`, and statuses exactly submitted / approved /
rejected / expired — a replaced certificate reads `expired` with `replaced_by` — matching the schema's enum."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import ExemptionStatus, TaxExemption
from billing.services.exemptions import tax_exemption_approve, tax_exemption_reject, tax_exemption_submit
from tests.api.conftest import as_user
from tests.clock import in_years
from tests.factories import UserFactory

EXPIRES = in_years(3)  # a certificate's last valid day, years from today (tests/clock.py)

pytestmark = pytest.mark.django_db

PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
API_STATUSES = {"submitted", "approved", "rejected", "expired"}


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    settings.PRIVATE_STORAGE_ROOT = tmp_path / "private"


def _url(account, exemption_id: int | None = None) -> str:
    base = f"/api/v1/customers/{account.customer.pk}/tax-exemptions/"
    return f"{base}{exemption_id}/" if exemption_id else base


def _submit(account, number: str, jurisdictions: str = "US-CA") -> TaxExemption:
    return tax_exemption_submit(
        customer=account.customer,
        jurisdictions=jurisdictions,
        exemption_type="resale",
        certificate_number=number,
        expires_on=EXPIRES,
        certificate=ContentFile(PDF_BYTES, name="certificate.pdf"),
        actor=account.owner,
    )


def _by_id(response) -> dict[int, dict]:
    assert response.status_code == 200, response.content
    return {row["id"]: row for row in response.json()["results"]}


def test_tax_exemption_post_takes_jurisdiction_and_returns_it(acme):
    response = as_user(acme.owner).post(
        _url(acme),
        {
            "certificate": SimpleUploadedFile("cert.pdf", PDF_BYTES, content_type="application/pdf"),
            "jurisdiction": "US-NY,US-NJ",
            "certificate_number": "NY-1",
            "expires_on": EXPIRES.isoformat(),
        },
        format="multipart",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["jurisdiction"], body["jurisdictions"], body["replaced_by"]) == (
        "submitted",
        "US-NJ,US-NY",  # stored sorted
        ["US-NJ", "US-NY"],
        None,
    )


def test_replaced_certificates_read_expired_with_replaced_by(acme):
    reviewer = UserFactory(is_staff=True)
    # an approved certificate, replaced by a newer one once that is approved
    old_approved = _submit(acme, "CA-OLD")
    tax_exemption_approve(exemption_id=old_approved.pk, reviewer=reviewer)
    pending_replaced = _submit(acme, "CA-NEW-1")
    # a submission replaced before anyone reviewed it
    newest = _submit(acme, "CA-NEW-2")
    tax_exemption_approve(exemption_id=newest.pk, reviewer=reviewer)

    statuses = dict(TaxExemption.objects.values_list("certificate_number", "status"))
    assert statuses == {"CA-OLD": "superseded", "CA-NEW-1": "superseded", "CA-NEW-2": "approved"}

    client = as_user(acme.billing_admin)
    rows = _by_id(client.get(_url(acme)))
    assert (rows[old_approved.pk]["status"], rows[old_approved.pk]["replaced_by"]) == ("expired", newest.pk)
    assert (rows[pending_replaced.pk]["status"], rows[pending_replaced.pk]["replaced_by"]) == ("expired", newest.pk)
    assert (rows[newest.pk]["status"], rows[newest.pk]["replaced_by"]) == ("approved", None)
    detail = client.get(_url(acme, old_approved.pk)).json()
    assert (detail["status"], detail["replaced_by"]) == ("expired", newest.pk)


def test_every_model_status_maps_into_the_schema_enum(acme, client):
    reviewer = UserFactory(is_staff=True)
    rejected = _submit(acme, "CA-REJ", "US-TX")
    tax_exemption_reject(exemption_id=rejected.pk, reviewer=reviewer, reason="Unreadable scan")
    expired = _submit(acme, "CA-EXP", "US-WA")
    TaxExemption.objects.filter(pk=expired.pk).update(status=ExemptionStatus.EXPIRED)
    _submit(acme, "CA-SUB", "US-CA")
    replaced = _submit(acme, "NY-OLD", "US-NY")
    _submit(acme, "NY-NEW", "US-NY")
    assert set(TaxExemption.objects.values_list("status", flat=True)) == {
        "submitted",
        "rejected",
        "expired",
        "superseded",
    }

    schema = client.get("/api/v1/schema/?format=json").json()
    enum = schema["components"]["schemas"]["ExemptionStatusEnum"]["enum"]
    returned = {row["status"] for row in _by_id(as_user(acme.owner).get(_url(acme))).values()}

    assert set(enum) == API_STATUSES
    assert returned <= API_STATUSES and returned == {"submitted", "rejected", "expired"}
    assert TaxExemption.objects.get(pk=replaced.pk).status == ExemptionStatus.SUPERSEDED
