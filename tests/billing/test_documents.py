import hashlib
import io

import pytest
from django.core import mail
from pypdf import PdfReader

from billing.exceptions import NotFound
from billing.models import Invoice
from billing.services.credit_notes import credit_note_create
from billing.services.documents import (
    credit_note_pdf_for_customer,
    invoice_pdf_for_customer,
    invoice_render_html,
    invoice_render_pdf,
    invoice_send_issued_email,
)
from billing.services.exemptions import tax_exemption_approve, tax_exemption_submit
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from billing.services.profiles import billing_profile_update
from tests.billing.conftest import FUTURE, certificate
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def _text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _issue(customer, staff, capture):
    invoice = invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[
            DraftLine(description="Team plan, 1 Nov – 1 Dec 2026", unit_amount_minor=15_000, sku_code="PLAT-BASE-M")
        ],
    )
    with capture(execute=True):
        invoice = invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)
    return Invoice.objects.get(pk=invoice.pk)


def test_invoice_pdf_contains_number_legal_name_po_totals_and_is_emailed(
    customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    billing_profile_update(customer=customer, standing_po_number="PO-4711")
    mail.outbox.clear()
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    assert invoice.pdf_sha256 and invoice.email_sent_at
    data, name = invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)
    assert name == f"{invoice.number}.pdf"
    assert hashlib.sha256(data).hexdigest() == invoice.pdf_sha256
    text = _text(data)
    for expected in (invoice.number, "Acme Incorporated", "PO-4711", "$150.00", "$10.88", "$160.88", "CA sales tax"):
        assert expected in text, expected
    [message] = mail.outbox
    assert message.to == ["ap@acme.test"]
    assert message.attachments[0][0] == f"{invoice.number}.pdf"
    assert message.attachments[0][1] == data


def test_invoice_pdf_is_never_regenerated(customer, staff, django_capture_on_commit_callbacks):
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    first = invoice.pdf_sha256
    billing_profile_update(customer=customer, legal_name="Renamed Corp")
    assert invoice_render_pdf(invoice_id=invoice.pk).pdf_sha256 == first
    assert "Acme Incorporated" in _text(invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)[0])


def test_invoice_pdf_of_exempt_customer_shows_wording_and_zero_tax(
    customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    exemption = tax_exemption_submit(
        customer=customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number="CA-RESALE-42",
        expires_on=FUTURE,
        certificate=certificate(),
    )
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    text = _text(invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)[0])
    assert "Tax exempt" in text and "CA-RESALE-42" in text
    assert "$0.00" in text and "$150.00" in text


def test_invoice_pdf_of_reverse_charge_customer_shows_wording(staff, django_capture_on_commit_callbacks):
    from tests.factories import BillingProfileFactory

    customer = CustomerFactory(name="Initech", legal_name="Initech GmbH", country="DE", region="", currency="EUR")
    BillingProfileFactory(customer=customer, region="", city="Berlin", postal_code="10115")
    billing_profile_update(customer=customer, tax_id="DE 136 695 976")
    invoice = invoice_draft_create(
        customer=customer, currency="EUR", lines=[DraftLine(description="Team plan", unit_amount_minor=15_000)]
    )
    with django_capture_on_commit_callbacks(execute=True):
        invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)
    text = _text(invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)[0])
    assert "Reverse charge" in text and "DE136695976" in text and "€150.00" in text


def test_invoice_pdf_of_another_customer_is_not_found(customer, staff, django_capture_on_commit_callbacks):
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    with pytest.raises(NotFound):
        invoice_pdf_for_customer(customer=CustomerFactory(), invoice_id=invoice.pk)


def test_invoice_draft_html_view_and_no_pdf_before_issue(customer):
    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Seats", unit_amount_minor=100)]
    )
    assert "Draft invoice" in invoice_render_html(invoice=invoice)
    with pytest.raises(ValueError):
        invoice_render_pdf(invoice_id=invoice.pk)
    with pytest.raises(NotFound):
        invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)


def test_credit_note_pdf(customer, staff, django_capture_on_commit_callbacks):
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_create(invoice_id=invoice.pk, reason_code="wrong_price", reason_text="Promo price")
    data, name = credit_note_pdf_for_customer(customer=customer, credit_note_id=note.pk)
    text = _text(data)
    assert name == f"{note.number}.pdf"
    assert note.number in text and invoice.number in text and "Wrong price" in text and "$150.00" in text


def _positions(data: bytes) -> dict[str, tuple[float, float]]:
    """Where each text run starts on the first page (x, y in PDF points; y grows upwards)."""
    found: dict[str, tuple[float, float]] = {}

    def visit(text, cm, tm, font_dict, font_size):
        if text.strip():
            found.setdefault(text.strip(), (tm[4] * cm[0] + cm[4], tm[5] * cm[3] + cm[5]))

    PdfReader(io.BytesIO(data)).pages[0].extract_text(visitor_text=visit)
    return found


def test_invoice_pdf_keeps_its_two_column_layout(customer, staff, django_capture_on_commit_callbacks):
    # The header and the parties are floated columns (faster to lay out than flexbox): seller and buyer side by side.
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    where = _positions(invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)[0])
    (from_x, from_y), (to_x, to_y) = where["FROM"], where["BILL TO"]
    assert abs(from_y - to_y) < 1 and to_x - from_x > 150
    (logo_x, logo_y), (number_x, number_y) = where["Continuum Software"], where["Invoice number"]
    assert number_x - logo_x > 250 and abs(logo_y - number_y) < 30  # logo left, invoice details right
    assert number_y > from_y > where["Description Qty Unit price Tax Amount"][1]  # header, parties, then lines


def test_document_render_loads_nothing_from_outside_static(settings):
    from billing.services.documents import _url_fetcher, html_to_pdf

    fetcher = _url_fetcher()
    for url in ("http://127.0.0.1:9/logo.png", "https://example.com/font.woff2", "file:///etc/hostname"):
        with pytest.raises(ValueError):
            fetcher.fetch(url)
    static_file = settings.BASE_DIR / "static" / "portal" / "portal.js"
    response = fetcher.fetch(static_file.as_uri())
    assert response.read() == static_file.read_bytes()
    response.close()
    # a refused image is left out; the document still renders
    pdf = html_to_pdf('<p>Invoice</p><img src="http://127.0.0.1:9/logo.png"><img src="file:///etc/hostname">')
    assert "Invoice" in _text(pdf)


def test_document_renders_share_one_font_configuration():
    from billing.services.documents import _font_config, html_to_pdf

    first = _font_config()
    html_to_pdf("<p>One</p>")
    html_to_pdf("<p>Two</p>")
    assert _font_config() is first


def test_document_render_leaves_the_garbage_collector_as_it_found_it():
    import gc

    from billing.services.documents import html_to_pdf

    html_to_pdf("<p>Warm-up</p>")
    gc.collect()
    baseline = len(gc.get_objects())
    for n in range(5):
        html_to_pdf(f"<p>Invoice {n}</p>")
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert len(gc.get_objects()) < baseline + 2_000  # renders do not accumulate objects


# Issue 15, hole 4: the admin wrote its own audit row for "resend"; the service records it, whoever resends.
def test_invoice_send_issued_email_resend_is_audited_by_the_service(
    customer, staff, django_capture_on_commit_callbacks
):
    from subscriptions.models import AuditEvent

    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    assert not AuditEvent.objects.filter(action="invoice.email_resent").exists()  # the first e-mail is no resend
    mail.outbox.clear()
    assert invoice_send_issued_email(invoice_id=invoice.pk, force=True, actor=staff)
    event = AuditEvent.objects.get(action="invoice.email_resent")
    assert (event.actor, event.object_id, len(mail.outbox)) == (staff, str(invoice.pk), 1)


def test_selectors_only_read_rendering_a_missing_pdf_is_a_service():
    # Issue 15, hole 4: two selectors rendered and stored PDFs. Reads stay in selectors; writes are services.
    import inspect

    import billing.selectors
    import billing.services.documents

    source = inspect.getsource(billing.selectors)
    assert "render_pdf" not in source and "pdf_for_customer" not in source
    assert callable(billing.services.documents.invoice_pdf_for_customer)


def test_invoice_email_writes_amounts_and_the_due_date_as_the_customer_s_country_does(
    customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    mail.outbox.clear()
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    [message] = mail.outbox
    assert "Total: $160.88" in message.body
    # en_US: "Dec 1, 2026", not the ISO "2026-12-01" a customer would have to read as a machine does
    assert f"by {invoice.due_on:%b} {invoice.due_on.day}, {invoice.due_on.year}" in message.body
