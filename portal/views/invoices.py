"""Invoices and credit notes: list with filters, detail, PDF download. Customers see issued documents only."""

from django.core.paginator import Paginator
from django.db.models.functions import ExtractYear
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import render

from billing.models import ISSUED_STATUSES, CreditNote, Invoice, InvoiceStatus
from portal.permissions import INVOICES, customer_view, get_for_customer

STATUS_FILTERS = [(s, InvoiceStatus(s).label) for s in ISSUED_STATUSES]


def _issued_invoices(customer):
    return Invoice.objects.filter(customer=customer, status__in=ISSUED_STATUSES, issued_at__isnull=False)


def _year(value: str) -> int | None:
    return int(value) if value.isdigit() and 1900 < int(value) < 3000 else None


@customer_view(INVOICES)
def invoice_list(request):
    customer = request.customer
    status = request.GET.get("status", "")
    year = _year(request.GET.get("year", ""))
    invoices = _issued_invoices(customer).order_by("-issued_at", "-id")
    errors = {}
    if status:
        if status in dict(STATUS_FILTERS):
            invoices = invoices.filter(status=status)
        else:
            errors["status"] = "Choose one of the listed statuses."
    if request.GET.get("year") and year is None:
        errors["year"] = "Choose one of the listed years."
    credit_notes = CreditNote.objects.filter(customer=customer).select_related("invoice").order_by("-issued_at", "-id")
    if year:
        invoices = invoices.filter(issued_at__year=year)
        credit_notes = credit_notes.filter(issued_at__year=year)
    years = sorted(
        set(_issued_invoices(customer).annotate(y=ExtractYear("issued_at")).values_list("y", flat=True).distinct()),
        reverse=True,
    )
    page = Paginator(invoices, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "portal/invoices/list.html",
        {
            "customer": customer,
            "page": page,
            "invoices": page.object_list,
            "credit_notes": list(credit_notes[:50]),
            "statuses": STATUS_FILTERS,
            "years": years,
            "status": status,
            "year": year,
            "errors": errors,
        },
    )


@customer_view(INVOICES)
def invoice_detail(request, invoice_id: int):
    invoice = get_for_customer(
        _issued_invoices(request.customer).prefetch_related("lines", "tax_lines", "credit_notes"),
        request.customer,
        pk=invoice_id,
    )
    return render(request, "portal/invoices/detail.html", {"customer": request.customer, "invoice": invoice})


def _pdf_response(data_or_file, filename: str) -> HttpResponse:
    if isinstance(data_or_file, bytes | bytearray):
        response = HttpResponse(bytes(data_or_file), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
    return FileResponse(data_or_file, as_attachment=True, filename=filename, content_type="application/pdf")


def invoice_pdf_bytes(invoice: Invoice):
    """The stored PDF, or one rendered now by billing when it has not been rendered yet."""
    if invoice.pdf_file:
        return invoice.pdf_file.open("rb")
    try:
        from billing.selectors import invoice_pdf
    except ImportError:
        invoice_pdf = None
    if invoice_pdf is not None:
        return invoice_pdf(invoice=invoice)
    raise Http404("The PDF of this invoice is not ready yet.")


@customer_view(INVOICES)
def invoice_download(request, invoice_id: int):
    invoice = get_for_customer(_issued_invoices(request.customer), request.customer, pk=invoice_id)
    return _pdf_response(invoice_pdf_bytes(invoice), f"{invoice.number}.pdf")


@customer_view(INVOICES)
def credit_note_download(request, credit_note_id: int):
    note = get_for_customer(CreditNote, request.customer, pk=credit_note_id)
    if note.pdf_file:
        return _pdf_response(note.pdf_file.open("rb"), f"{note.number}.pdf")
    try:
        from billing.selectors import credit_note_pdf
    except ImportError:
        raise Http404("The PDF of this credit note is not ready yet.")
    return _pdf_response(credit_note_pdf(credit_note=note), f"{note.number}.pdf")
