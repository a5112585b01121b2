"""Invoice and credit-note documents: one template renders both the HTML view and the PDF (WeasyPrint).

A document's PDF is rendered once, after issue, stored privately with its SHA-256, and never regenerated: a second
render request is a no-op. The "invoice issued" e-mail attaches exactly the stored bytes.
"""

import hashlib
import logging
import threading
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from billing.einvoice import xml_from_pdf
from billing.exceptions import EInvoiceFormatInvalid, EInvoiceInvalid, EInvoiceNotAvailable
from billing.gc_frozen import long_lived_objects_frozen
from billing.models import CreditNote, Invoice
from billing.selectors import credit_note_get_for_customer, invoice_get_for_customer
from billing.services.einvoices import credit_note_einvoice_pdf, invoice_einvoice_pdf, invoice_xrechnung_xml
from subscriptions.models import Customer, Membership, Role, User
from subscriptions.money import format_date, format_money
from subscriptions.services.audit import audit_record

logger = logging.getLogger(__name__)


def _page_size(invoice: Invoice) -> str:
    return "Letter" if invoice.billing_country in ("US", "CA") else "A4"


def invoice_document_context(*, invoice: Invoice) -> dict:
    seller = invoice.seller_details or dict(settings.SELLER)
    return {
        "invoice": invoice,
        "doc_number": invoice.number or f"DRAFT-{invoice.pk}",
        "seller": seller,
        "lines": list(invoice.lines.all()),
        "tax_lines": list(invoice.tax_lines.all()),
        "period_end_inclusive": (invoice.period_end - timedelta(days=1)) if invoice.period_end else None,
        "page_size": _page_size(invoice),
        "where": invoice.billing_country or "US",  # the customer reads dates as written in their country
    }


def invoice_render_html(*, invoice: Invoice) -> str:
    """The invoice as HTML (the portal's invoice view and the PDF's source)."""
    return render_to_string("billing/invoice.html", invoice_document_context(invoice=invoice))


def credit_note_render_html(*, credit_note: CreditNote) -> str:
    invoice = credit_note.invoice
    return render_to_string(
        "billing/credit_note.html",
        {
            "credit_note": credit_note,
            "invoice": invoice,
            "doc_number": credit_note.number,
            "seller": invoice.seller_details or dict(settings.SELLER),
            "lines": list(credit_note.lines.all()),
            "page_size": _page_size(invoice),
            "where": invoice.billing_country or "US",
        },
    )


_renderer = threading.local()


def _font_config():
    """One WeasyPrint FontConfiguration per worker process (per thread: Pango font maps are not shared across
    threads). Left to itself WeasyPrint builds a fresh one — a new fontconfig/Pango font map that loads every font
    again — for each document; reusing it keeps the loaded fonts warm between renders."""
    font_config = getattr(_renderer, "font_config", None)
    if font_config is None:
        from weasyprint.text.fonts import FontConfiguration

        font_config = _renderer.font_config = FontConfiguration()
    return font_config


def _url_fetcher():
    """Documents load nothing but files shipped in static/ (and data: URIs): never the network, never other files.
    A refused URL is skipped by WeasyPrint (logged), it does not fail the render."""
    fetcher = getattr(_renderer, "url_fetcher", None)
    if fetcher is None:
        from weasyprint.urls import URLFetcher

        static_root = (Path(settings.BASE_DIR) / "static").resolve()

        class StaticOnlyFetcher(URLFetcher):
            def fetch(self, url, headers=None):
                parsed = urlparse(url)
                if parsed.scheme == "data":
                    return super().fetch(url, headers)
                if parsed.scheme == "file" and Path(url2pathname(parsed.path)).resolve().is_relative_to(static_root):
                    return super().fetch(url, headers)
                raise ValueError(f"Documents may only load files from static/: {url}")

        fetcher = _renderer.url_fetcher = StaticOnlyFetcher(timeout=5)
    return fetcher


def html_to_pdf(html: str, *, pdf_variant: str | None = None) -> bytes:
    """`pdf_variant="pdf/a-3b"` for e-invoices: PDF/A-3 is the archive format that may carry the XML."""
    with long_lived_objects_frozen():  # see billing/gc_frozen.py: keeps full GC scans out of the render's p95
        return _render(html, pdf_variant=pdf_variant)


def _render(html: str, *, pdf_variant: str | None = None) -> bytes:
    from weasyprint import HTML

    return HTML(string=html, base_url=str(settings.BASE_DIR), url_fetcher=_url_fetcher()).write_pdf(
        font_config=_font_config(), pdf_variant=pdf_variant
    )


def _lang(document: Invoice | CreditNote) -> str:
    profile = getattr(document.customer, "billing_profile", None)
    return getattr(profile, "invoice_language", "") or "en"


def invoice_pdf_bytes(*, invoice: Invoice) -> tuple[bytes, dict]:
    """The PDF of an invoice and, for an e-invoice, its validation record: a Factur-X PDF/A-3b carrying the
    validated EN 16931 XML (billing/services/einvoices.py). Raises EInvoiceInvalid instead of a failing file."""
    html = invoice_render_html(invoice=invoice)
    if not invoice.e_invoice:
        return html_to_pdf(html), {}
    pdf = html_to_pdf(html, pdf_variant="pdf/a-3b")
    return invoice_einvoice_pdf(invoice=invoice, pdf=pdf, lang=_lang(invoice))


def invoice_render_pdf(*, invoice_id: int) -> Invoice:
    """Render and store the PDF of an issued invoice once (idempotent: an existing PDF is never replaced)."""
    invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
    if not invoice.is_issued:
        raise ValueError("Only issued invoices get a stored PDF; drafts are previewed as HTML.")
    if invoice.pdf_sha256:
        return invoice
    try:
        pdf, validation = invoice_pdf_bytes(invoice=invoice)
    except EInvoiceInvalid as exc:  # staff see why on the invoice; nothing is stored or sent
        Invoice.objects.filter(pk=invoice_id).update(e_invoice_validation=exc.validation)
        raise
    with transaction.atomic():
        locked = Invoice.objects.select_for_update().get(pk=invoice_id)
        if locked.pdf_sha256:  # a concurrent render won
            return locked
        locked.pdf_file.save(f"{locked.number}.pdf", ContentFile(pdf), save=False)
        locked.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        locked.pdf_rendered_at = timezone.now()
        locked.e_invoice_validation = validation
        Invoice.objects.filter(pk=locked.pk).update(
            pdf_file=locked.pdf_file.name,
            pdf_sha256=locked.pdf_sha256,
            pdf_rendered_at=locked.pdf_rendered_at,
            e_invoice_validation=validation,
        )
    return locked


def credit_note_render_pdf(*, credit_note_id: int) -> CreditNote:
    credit_note = CreditNote.objects.select_related("invoice", "customer").get(pk=credit_note_id)
    if credit_note.pdf_sha256:
        return credit_note
    html = credit_note_render_html(credit_note=credit_note)
    validation = {}
    if credit_note.invoice.e_invoice:
        try:
            pdf, validation = credit_note_einvoice_pdf(
                credit_note=credit_note, pdf=html_to_pdf(html, pdf_variant="pdf/a-3b"), lang=_lang(credit_note)
            )
        except EInvoiceInvalid as exc:
            CreditNote.objects.filter(pk=credit_note_id).update(e_invoice_validation=exc.validation)
            raise
    else:
        pdf = html_to_pdf(html)
    with transaction.atomic():
        locked = CreditNote.objects.select_for_update().get(pk=credit_note_id)
        if locked.pdf_sha256:
            return locked
        locked.pdf_file.save(f"{locked.number}.pdf", ContentFile(pdf), save=False)
        locked.pdf_sha256 = hashlib.sha256(pdf).hexdigest()
        locked.pdf_rendered_at = timezone.now()
        locked.e_invoice_validation = validation
        locked.save(update_fields=["pdf_file", "pdf_sha256", "pdf_rendered_at", "e_invoice_validation"])
    return locked


def document_pdf_bytes(*, document: Invoice | CreditNote) -> bytes:
    """The stored PDF, verified against its SHA-256 (raises if the file was altered)."""
    with document.pdf_file.open("rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != document.pdf_sha256:
        raise ValueError(f"The stored PDF of {document.number} does not match its recorded checksum.")
    return data


def _recipients(invoice: Invoice) -> list[str]:
    if invoice.billing_emails:
        return list(invoice.billing_emails)
    return list(
        Membership.objects.filter(customer_id=invoice.customer_id, role__in=[Role.OWNER, Role.BILLING_ADMIN])
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )


def invoice_send_issued_email(*, invoice_id: int, force: bool = False, actor: User | None = None) -> bool:
    """E-mail the issued invoice, PDF attached, to the billing e-mails (owners/billing admins when none are set).

    Sent once (email_sent_at); `force` resends (staff "resend invoice e-mail", `actor` = the staff member), and a
    resend that went out is audited (`invoice.email_resent`). Returns whether a mail was sent.
    """
    invoice = invoice_render_pdf(invoice_id=invoice_id)
    if invoice.email_sent_at and not force:
        return False
    recipients = _recipients(invoice)
    if not recipients:
        logger.warning("invoice %s has no billing e-mail recipients", invoice.number)
        return False
    where = invoice.billing_country or "US"  # the customer reads amounts and dates as written in their country
    due = format_money(invoice.amount_due_minor, invoice.currency, where)
    body = (
        f"Hello,\n\nInvoice {invoice.number} from {invoice.seller_details.get('name', '')} for "
        f"{invoice.billing_legal_name} is attached.\n\n"
        f"Total: {format_money(invoice.total_minor, invoice.currency, where)}\n"
        f"Amount due: {due}"
        + (f" by {format_date(invoice.due_on, where)}" if invoice.due_on and invoice.amount_due_minor else "")
        + (f"\nPO number: {invoice.po_number}" if invoice.po_number else "")
        + (
            "\n\nThe attached PDF is a Factur-X / ZUGFeRD e-invoice (EN 16931): the structured invoice data is "
            "embedded in it as factur-x.xml."
            if invoice.e_invoice
            else ""
        )
        + f"\n\nView and download your invoices at {settings.SITE_URL}/\n\n{invoice.seller_details.get('name', '')}"
    )
    message = EmailMessage(subject=f"Invoice {invoice.number} — {due} due", body=body, to=recipients)
    message.attach(f"{invoice.number}.pdf", document_pdf_bytes(document=invoice), "application/pdf")
    message.send()
    Invoice.objects.filter(pk=invoice.pk).update(email_sent_at=timezone.now())
    if force:
        audit_record(
            customer=invoice.customer,
            actor=actor,
            action="invoice.email_resent",
            obj=invoice,
            summary=f"Invoice {invoice.number} e-mailed again",
        )
    return True


# --- the customer's downloads: render on first request if the task has not run yet (a write, hence a service) ------


def invoice_pdf_for_customer(*, customer, invoice_id: int) -> tuple[bytes, str]:
    """(PDF bytes, file name) of an issued invoice of `customer` (NotFound for another customer's); renders and
    stores it now if the render task has not run yet (the same idempotent `invoice_render_pdf`)."""
    invoice = invoice_get_for_customer(customer=customer, invoice_id=invoice_id)
    if not invoice.pdf_sha256:
        invoice = invoice_render_pdf(invoice_id=invoice.pk)
    return document_pdf_bytes(document=invoice), f"{invoice.number}.pdf"


def credit_note_pdf_for_customer(*, customer, credit_note_id: int) -> tuple[bytes, str]:
    """(PDF bytes, file name) of a credit note of `customer`; renders and stores it first if needed."""
    credit_note = credit_note_get_for_customer(customer=customer, credit_note_id=credit_note_id)
    if not credit_note.pdf_sha256:
        credit_note = credit_note_render_pdf(credit_note_id=credit_note.pk)
    return document_pdf_bytes(document=credit_note), f"{credit_note.number}.pdf"


EINVOICE_FORMATS = ("pdf", "xml", "xrechnung")


def invoice_einvoice_for_customer(*, customer: Customer, invoice_id: int, fmt: str = "pdf") -> tuple[bytes, str, str]:
    """(bytes, file name, content type) of an issued invoice's e-invoice: `pdf` the stored Factur-X PDF (the one
    e-mailed), `xml` the factur-x.xml embedded in it, `xrechnung` the XRechnung CII XML. Raises NotFound for another
    customer's invoice and EInvoiceNotAvailable for an invoice not issued as an e-invoice."""
    if fmt not in EINVOICE_FORMATS:
        raise EInvoiceFormatInvalid(f"Choose a format: {', '.join(EINVOICE_FORMATS)}.")
    invoice = invoice_get_for_customer(customer=customer, invoice_id=invoice_id)
    if not invoice.e_invoice:
        raise EInvoiceNotAvailable(f"Invoice {invoice.number} was not issued as an e-invoice; download its PDF.")
    if fmt == "xrechnung":
        return invoice_xrechnung_xml(invoice=invoice), f"{invoice.number}-xrechnung.xml", "application/xml"
    pdf, filename = invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)
    if fmt == "xml":
        return xml_from_pdf(pdf), f"{invoice.number}-factur-x.xml", "application/xml"
    return pdf, filename, "application/pdf"
