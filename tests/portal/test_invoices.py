"""Invoices and credit notes pages: filters, detail, PDF download, other customers' documents, query counts."""

import hashlib
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from billing.models import CreditNote, Invoice
from tests.portal.conftest import make_invoice

pytestmark = pytest.mark.django_db


def _list(client, account, **params):
    return client.get(reverse("portal:invoices", args=[account.customer.pk]), params)


def test_invoice_list_shows_issued_invoices_with_status_amounts_and_due_dates(account, client_for):
    invoice = make_invoice(account.customer, total=123_450)
    Invoice.objects.create(customer=account.customer, currency="USD", status="draft")  # never shown
    page = _list(client_for(account.billing_admin), account)
    assert page.status_code == 200
    assert invoice.number in page.text
    assert "$1,234.50" in page.text
    assert invoice.due_on.strftime("%b %-d, %Y") in page.text
    assert "Draft" not in page.text


def test_invoice_list_filters_by_status_and_year(account, client_for):
    paid_2025 = make_invoice(account.customer, status="paid", issued_at=datetime(2025, 3, 1, tzinfo=UTC))
    open_2026 = make_invoice(account.customer, status="open", issued_at=datetime(2026, 2, 1, tzinfo=UTC))
    client = client_for(account.owner)
    by_status = _list(client, account, status="paid")
    assert paid_2025.number in by_status.text and open_2026.number not in by_status.text
    by_year = _list(client, account, year="2026")
    assert open_2026.number in by_year.text and paid_2025.number not in by_year.text
    assert '<option value="2025"' in by_year.text
    nothing = _list(client, account, status="paid", year="2026")
    assert "No invoices match these filters" in nothing.text


def test_invoice_list_explains_a_bad_filter_next_to_the_field(account, client_for):
    page = _list(client_for(account.owner), account, status="stolen", year="last")
    assert "Choose one of the listed statuses." in page.text
    assert "Choose one of the listed years." in page.text


def test_invoice_detail_and_pdf_download(account, client_for):
    invoice = make_invoice(account.customer, pdf=b"%PDF-1.4 the real thing")
    client = client_for(account.billing_admin)
    detail = client.get(reverse("portal:invoice_detail", args=[account.customer.pk, invoice.pk]))
    assert detail.status_code == 200
    assert "Team, monthly" in detail.text and "Download PDF" in detail.text
    pdf = client.get(reverse("portal:invoice_pdf", args=[account.customer.pk, invoice.pk]))
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert f'filename="{invoice.number}.pdf"' in pdf["Content-Disposition"]
    assert pdf.content == b"%PDF-1.4 the real thing"


def test_another_customers_invoice_is_404_even_through_my_customer_url(account, other_account, client_for):
    theirs = make_invoice(other_account.customer)
    client = client_for(account.owner)
    for name in ("portal:invoice_detail", "portal:invoice_pdf"):
        assert client.get(reverse(name, args=[account.customer.pk, theirs.pk])).status_code == 404
        assert client.get(reverse(name, args=[other_account.customer.pk, theirs.pk])).status_code == 404


def test_a_draft_invoice_is_not_reachable(account, client_for):
    draft = Invoice.objects.create(customer=account.customer, currency="USD", status="draft")
    url = reverse("portal:invoice_detail", args=[account.customer.pk, draft.pk])
    assert client_for(account.owner).get(url).status_code == 404


def test_credit_notes_are_listed_and_downloadable(account, client_for):
    from django.core.files.base import ContentFile
    from django.utils import timezone

    invoice = make_invoice(account.customer)
    note = CreditNote.objects.create(
        invoice=invoice,
        customer=account.customer,
        number="CN-2026-000001",
        series="CN-2026",
        currency="USD",
        reason_code="wrong_seat_count",
        subtotal_minor=1_000,
        tax_minor=0,
        total_minor=1_000,
        issued_at=timezone.now(),
    )
    note.pdf_file.save("CN-2026-000001.pdf", ContentFile(b"%PDF cn"), save=False)
    CreditNote.objects.filter(pk=note.pk).update(
        pdf_file=note.pdf_file.name, pdf_sha256=hashlib.sha256(b"%PDF cn").hexdigest()
    )
    client = client_for(account.owner)
    page = _list(client, account)
    assert "CN-2026-000001" in page.text and "Wrong seat count" in page.text
    pdf = client.get(reverse("portal:credit_note_pdf", args=[account.customer.pk, note.pk]))
    assert pdf.content == b"%PDF cn"


def test_invoice_list_query_count_does_not_grow_with_invoices(account, client_for, django_assert_max_num_queries):
    client = client_for(account.owner)
    make_invoice(account.customer)
    with django_assert_max_num_queries(10) as captured:
        _list(client, account)
    baseline = len(captured.captured_queries)
    for _ in range(20):
        make_invoice(account.customer)
    with django_assert_max_num_queries(baseline):
        page = _list(client, account)
    assert page.text.count("PDF<span") == 21


def test_invoice_pdf_is_rendered_on_demand_when_billing_has_not_yet(account, client_for):
    invoice = make_invoice(account.customer, pdf=None)
    pdf = client_for(account.owner).get(reverse("portal:invoice_pdf", args=[account.customer.pk, invoice.pk]))
    assert pdf.status_code == 200
    assert pdf.content.startswith(b"%PDF")
