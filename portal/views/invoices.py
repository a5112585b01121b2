"""Invoices and credit notes: list with filters, detail, PDF download. Customers see issued documents only."""

from django.core.paginator import Paginator
from django.db.models.functions import ExtractYear
from django.http import Http404, HttpResponse
from django.shortcuts import render

from billing.exceptions import EInvoiceFormatInvalid, EInvoiceInvalid, NotFound
from billing.models import ISSUED_STATUSES, CreditNote, Invoice, InvoiceStatus
from billing.selectors import credit_note_list_for_customer, credit_note_refund_summary
from billing.services.documents import (
    credit_note_pdf_for_customer,
    invoice_einvoice_for_customer,
    invoice_pdf_for_customer,
)
from portal.downloads import attachment_response
from portal.page_cache import evaluated_page, page_data
from portal.permissions import INVOICES, customer_view, get_for_customer
from subscriptions.inputs import parse_int

STATUS_FILTERS = [(s, InvoiceStatus(s).label) for s in ISSUED_STATUSES]

# What the list shows of each row (portal/invoices/list.html): an invoice has 50 columns, 8 of them JSON.
LIST_INVOICE_FIELDS = ("customer_id", "number", "issued_at", "status", "due_on", "total_minor", "amount_due_minor")
LIST_INVOICE_FIELDS += ("currency",)
LIST_CREDIT_NOTE_FIELDS = (
    "customer_id",
    "number",
    "issued_at",
    "invoice__number",
    "reason_code",
    "total_minor",
    "currency",
    "refund_due_minor",
    # credit_note_refund_summary
    "refund__amount_minor",
    "refund__currency",
    "refund__status",
    "refund__reference",
    "refund__credit_note_id",
)


def _issued_invoices(customer):
    return Invoice.objects.filter(customer=customer, status__in=ISSUED_STATUSES, issued_at__isnull=False)


def _year(value: str) -> int | None:
    return parse_int(value, minimum=1901, maximum=2999)


@customer_view(INVOICES)
def invoice_list(request):
    args = tuple(request.GET.get(name, "") for name in ("status", "year", "page"))
    context = page_data(request, "invoices", lambda: _list_context(request.customer, *args), parts=args)
    return render(request, "portal/invoices/list.html", {**context, "customer": request.customer})


def _list_context(customer, status: str, raw_year: str, number: str) -> dict:
    year = _year(raw_year)
    invoices = _issued_invoices(customer).only(*LIST_INVOICE_FIELDS).order_by("-issued_at", "-id")
    errors = {}
    if status:
        if status in dict(STATUS_FILTERS):
            invoices = invoices.filter(status=status)
        else:
            errors["status"] = "Choose one of the listed statuses."
    if raw_year and year is None:
        errors["year"] = "Choose one of the listed years."
    credit_notes = credit_note_list_for_customer(customer=customer).only(*LIST_CREDIT_NOTE_FIELDS)
    if year:
        invoices = invoices.filter(issued_at__year=year)
        credit_notes = credit_notes.filter(issued_at__year=year)
    years = sorted(
        set(_issued_invoices(customer).annotate(y=ExtractYear("issued_at")).values_list("y", flat=True).distinct()),
        reverse=True,
    )
    page = evaluated_page(Paginator(invoices, 25).get_page(number or None))
    return {
        "page": page,
        "invoices": page.object_list,
        "credit_notes": _with_refunds(credit_notes[:50]),
        "statuses": STATUS_FILTERS,
        "years": years,
        "status": status,
        "year": year,
        "errors": errors,
    }


@customer_view(INVOICES)
def invoice_detail(request, invoice_id: int):
    context = page_data(
        request, "invoice_detail", lambda: _detail_context(request.customer, invoice_id), parts=(invoice_id,)
    )
    return render(request, "portal/invoices/detail.html", {**context, "customer": request.customer})


def _detail_context(customer, invoice_id: int) -> dict:
    # Another customer's invoice is a 404 here, before anything is cached.
    invoice = get_for_customer(
        _issued_invoices(customer).prefetch_related("lines", "tax_lines", "credit_notes__refund"),
        customer,
        pk=invoice_id,
    )
    return {"invoice": invoice, "credit_notes": _with_refunds(invoice.credit_notes.all())}


def _with_refunds(credit_notes) -> list[tuple]:
    """(credit note, what it gives back) pairs for the templates; the notes come with their refund selected."""
    return [(note, credit_note_refund_summary(credit_note=note)) for note in credit_notes]


def _pdf_response(data: bytes, filename: str):
    return attachment_response(bytes(data), content_type="application/pdf", filename=filename)


@customer_view(INVOICES)
def invoice_download(request, invoice_id: int):
    """The stored PDF; billing renders it now if its task has not run yet."""
    invoice = get_for_customer(_issued_invoices(request.customer), request.customer, pk=invoice_id)
    data, filename = invoice_pdf_for_customer(customer=request.customer, invoice_id=invoice.pk)
    return _pdf_response(data, filename)


@customer_view(INVOICES)
def credit_note_download(request, credit_note_id: int):
    note = get_for_customer(CreditNote, request.customer, pk=credit_note_id)
    data, filename = credit_note_pdf_for_customer(customer=request.customer, credit_note_id=note.pk)
    return _pdf_response(data, filename)


@customer_view(INVOICES)
def invoice_einvoice(request, invoice_id: int):
    """The Factur-X PDF (default), `?format=xml` the embedded EN 16931 XML, `?format=xrechnung` the XRechnung XML."""
    invoice = get_for_customer(_issued_invoices(request.customer), request.customer, pk=invoice_id)
    try:
        data, filename, content_type = invoice_einvoice_for_customer(
            customer=request.customer, invoice_id=invoice.pk, fmt=request.GET.get("format", "pdf")
        )
    except NotFound as exc:
        raise Http404(exc.message)
    except (EInvoiceFormatInvalid, EInvoiceInvalid) as exc:
        return HttpResponse(exc.message, status=400 if isinstance(exc, EInvoiceFormatInvalid) else 422)
    return attachment_response(bytes(data), content_type=content_type, filename=filename)
