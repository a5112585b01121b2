"""Billing back office, read side: the review queue, invoice detail, exemption review and who may see what."""

import pytest
from django.urls import reverse

from billing.models import InvoiceStatus
from tests.admin.helpers import customer_with_subscription, exemption_for, invoice_for
from tests.factories import utc

pytestmark = pytest.mark.django_db

PO_MISSING = [{"code": "po_missing", "message": "PO number required but missing"}]
FIRST = [{"code": "first_invoice", "message": "First invoice of a new customer"}]


def test_review_queue_lists_held_invoices_with_reasons_filterable_by_reason(billing_client):
    customer = customer_with_subscription(name="Acme Inc")
    po = invoice_for(customer, hold_reasons=PO_MISSING)
    first = invoice_for(customer_with_subscription(name="Globex"), hold_reasons=FIRST)
    url = reverse("admin:billing_invoice_changelist")

    everything = billing_client.get(url, {"status__exact": "held"})
    only_po = billing_client.get(url, {"status__exact": "held", "hold_reason": "po_missing"})

    assert "PO number required but missing" in everything.text
    assert "First invoice of a new customer" in everything.text
    assert [row.pk for row in only_po.context["cl"].result_list] == [po.pk]
    assert first.pk not in [row.pk for row in only_po.context["cl"].result_list]


def test_review_queue_filters_by_age_held(billing_client):
    customer = customer_with_subscription()
    old = invoice_for(customer, hold_reasons=FIRST, created_at=utc(2026, 1, 1))
    invoice_for(customer, hold_reasons=FIRST)

    response = billing_client.get(reverse("admin:billing_invoice_changelist"), {"held_for": "7d"})

    assert [row.pk for row in response.context["cl"].result_list] == [old.pk]


def test_invoice_review_shows_lines_tax_computation_and_diff_with_previous(billing_client):
    customer = customer_with_subscription()
    invoice_for(
        customer,
        status="paid",
        number="INV-2026-000001",
        lines=[("Team — flat fee", "PLAT-BASE-M", 1, 10_000), ("Seats", "SEAT-STD-M", 5, 1_000)],
        created_at=utc(2026, 10, 1),
    )
    current = invoice_for(
        customer,
        hold_reasons=[{"code": "amount_changed", "message": "Total changed by more than 25%"}],
        lines=[("Team — flat fee", "PLAT-BASE-M", 1, 10_000), ("Seats", "SEAT-STD-M", 12, 1_000)],
        tax_rate="7.25",
    )

    page = billing_client.get(reverse("admin:billing_invoice_change", args=[current.pk]))

    assert page.status_code == 200
    review = page.context["review"]
    assert [row["line"].quantity for row in review["lines"]] == [1, 12]
    assert review["tax_lines"][0]["taxable"] == "USD 220.00"
    assert review["tax_lines"][0]["tax"] == "USD 15.95"
    assert review["total"] == "USD 235.95"
    assert review["previous"].number == "INV-2026-000001"
    seats = next(row for row in review["diff"] if row["description"] == "Seats")
    assert (seats["change"], seats["previous_quantity"], seats["current_quantity"]) == ("changed", 5, 12)
    assert seats["delta"] == "USD 70.00"
    assert "Total changed by more than 25%" in page.text


@pytest.mark.parametrize("client_fixture", ["billing_client", "super_client"])
def test_issued_invoice_and_credit_note_are_read_only_for_everyone(request, client_fixture):
    client = request.getfixturevalue(client_fixture)
    invoice = invoice_for(customer_with_subscription(), status="open", number="INV-2026-000009")

    response = client.post(
        reverse("admin:billing_invoice_change", args=[invoice.pk]), {"total_minor": 1, "status": "paid"}
    )

    assert response.status_code == 403
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    page = client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    assert 'name="total_minor"' not in page.text
    assert 'name="status"' not in page.text


def test_support_reads_invoices_but_never_tax_exemptions_or_certificates(support_client):
    customer = customer_with_subscription()
    invoice = invoice_for(customer, hold_reasons=FIRST)
    exemption = exemption_for(customer)

    assert support_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk])).status_code == 200
    assert support_client.get(reverse("admin:billing_taxexemption_changelist")).status_code == 403
    assert support_client.get(reverse("admin:billing_taxexemption_change", args=[exemption.pk])).status_code == 403
    certificate = support_client.get(reverse("admin:billing_taxexemption_certificate", args=[exemption.pk]))
    assert certificate.status_code == 403
    assert support_client.get(reverse("admin:billing_taxrate_changelist")).status_code == 403
    # The customer page says an exemption exists, but links to no certificate.
    page = support_client.get(reverse("admin:subscriptions_customer_change", args=[customer.pk]))
    assert "Submitted, awaiting review" in page.text
    assert reverse("admin:billing_taxexemption_change", args=[exemption.pk]) not in page.text


def test_billing_staff_see_the_certificate_inline_beside_submitted_data(billing_client):
    exemption = exemption_for(customer_with_subscription())

    page = billing_client.get(reverse("admin:billing_taxexemption_change", args=[exemption.pk]))
    certificate = billing_client.get(reverse("admin:billing_taxexemption_certificate", args=[exemption.pk]))

    assert page.status_code == 200
    assert "CA-RESALE-123" in page.text
    assert "We resell the licences" in page.text
    assert f'<iframe src="{reverse("admin:billing_taxexemption_certificate", args=[exemption.pk])}"' in page.text
    assert certificate.status_code == 200
    assert certificate["Content-Type"] == "application/pdf"
    assert b"".join(certificate.streaming_content).startswith(b"%PDF")
    assert "frame-ancestors 'self'" in certificate["Content-Security-Policy"]


def test_billing_staff_manage_tax_rates_support_cannot(billing_client, support_client):
    data = {
        "country": "US",
        "region": "CA",
        "name": "CA sales tax",
        "rate": "7.2500",
        "tax_categories": '["saas"]',
        "effective_from": "2026-01-01",
    }
    assert support_client.post(reverse("admin:billing_taxrate_add"), data).status_code == 403
    response = billing_client.post(reverse("admin:billing_taxrate_add"), data)
    assert response.status_code == 302
