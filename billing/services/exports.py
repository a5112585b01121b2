"""Accounting exports for billing staff (docs/billing-rules.md "Accounting exports", docs/metrics.md).

`accounting_export_request` records who asked for which range (audited) and queues the build after commit;
`accounting_export_build` (Celery, idempotent: a finished export is left alone) writes the file with progress.

What an export holds for the half-open UTC range [start, end):
* documents — one row per issued invoice, credit note, succeeded payment and refund dated in the range: net, tax by
  rate and jurisdiction, gross, currency, customer, VAT ID, PO number, status;
* lines — one row per invoice line and credit-note line, with SKU, tax category and package, for revenue by both;
* revenue — the straight-line revenue schedule: per month, what the range's invoices (less their credit notes)
  recognise, so finance can book deferred revenue;
* balance — per currency, for the invoices issued in the range: invoiced − credited = paid − refunded + outstanding.
"""

import csv
import io
import zipfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Prefetch
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.exceptions import BillingError
from billing.models import (
    ISSUED_STATUSES,
    AccountingExport,
    CreditNote,
    CreditNoteLine,
    ExportFormat,
    ExportStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
)
from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models import User
from subscriptions.money import minor_to_major
from subscriptions.selectors import PackageTimeline, package_timelines_for_subscriptions
from subscriptions.services.audit import audit_record

MAX_RANGE_DAYS = 366 * 2


class ExportInvalid(BillingError):
    code = "export_invalid"


def _utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def _next_month(moment: datetime) -> datetime:
    return datetime(moment.year + (moment.month == 12), moment.month % 12 + 1, 1, tzinfo=UTC)


def _money(amount_minor: int, currency: str):
    return minor_to_major(amount_minor, currency)


def _money_movement(document, number, on, row, invoice, gross, *, customer_id, refers_to, reference) -> dict:
    """A payment or refund row of the export: money moved, no tax of its own, tied to the document it settles."""
    return {
        "document": document,
        "number": number,
        "date": on.date().isoformat(),
        "customer_id": customer_id,
        "customer": invoice.billing_legal_name or invoice.customer.name,
        "vat_id": _vat_ids(invoice),
        "po_number": invoice.po_number,
        "status": row.status,
        "currency": row.currency,
        "net": "",
        "tax": "",
        "gross": gross,
        "tax_by_rate": "",
        "refers_to": refers_to,
        "reference": reference,
    }


# --- the revenue schedule ---------------------------------------------------------------------------------------------


def recognise_straight_line(amount_minor: int, *, start: datetime | None, end: datetime | None, issued_at: datetime):
    """[(month start, minor units)] recognising `amount_minor` evenly per second of [start, end), month by month.

    Every month gets its share rounded down; the remainder goes to the last month, so the parts always add up to
    the amount exactly (integers, no floats). A line without a service period (a one-off charge) is recognised in
    the month it was issued. docs/metrics.md has the definition and a worked example.
    """
    if start is None or end is None or end <= start:
        return [(_month_start(issued_at), amount_minor)]
    total = (end - start).total_seconds()
    parts, cursor, given = [], start, 0
    while cursor < end:
        month_end = min(_next_month(cursor), end)
        share = int(amount_minor * int((month_end - cursor).total_seconds()) // int(total))
        parts.append([_month_start(cursor), share])
        given += share
        cursor = month_end
    parts[-1][1] += amount_minor - given
    return [(month, share) for month, share in parts]


# --- gathering --------------------------------------------------------------------------------------------------------


@dataclass
class ExportData:
    documents: list[dict] = field(default_factory=list)
    tax: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)
    revenue: list[dict] = field(default_factory=list)
    balance: list[dict] = field(default_factory=list)

    def sheets(self) -> dict[str, list[dict]]:
        return {
            "documents": self.documents,
            "tax": self.tax,
            "lines": self.lines,
            "revenue": self.revenue,
            "balance": self.balance,
        }


def _package_of(invoice: Invoice, at: datetime | None, timelines: dict[int, PackageTimeline]) -> str:
    """The package in force when the line's service began (or, with no period, when the invoice was issued) — not the
    customer's package today, which a later upgrade or downgrade has changed. A manual invoice has no package."""
    if not invoice.subscription_id:
        return ""
    timeline = timelines.get(invoice.subscription_id)
    if timeline is None:
        return invoice.subscription.package.slug
    return timeline.at(at or invoice.issued_at)


def _vat_ids(invoice: Invoice) -> str:
    return " ".join(
        str(tax_id.get("value", tax_id)) if isinstance(tax_id, dict) else str(tax_id)
        for tax_id in invoice.customer_tax_ids or []
    )


def _rate_text(jurisdiction: str, name: str, rate, amount) -> str:
    return f"{jurisdiction or '-'} {name} {rate.normalize()}%: {amount}"


def accounting_export_data(*, start: date, end: date, progress: Callable[[int], None] | None = None) -> ExportData:
    """Everything an export holds for [start, end) (see the module docstring). Read-only."""
    progress = progress or (lambda percent: None)
    since, until = _utc(start), _utc(end)
    data = ExportData()
    invoices = list(
        Invoice.objects.filter(status__in=ISSUED_STATUSES, issued_at__gte=since, issued_at__lt=until)
        .select_related("customer", "subscription__package")
        .prefetch_related("tax_lines", Prefetch("lines", queryset=InvoiceLine.objects.order_by("position", "pk")))
        .order_by("issued_at", "pk")
    )
    timelines = package_timelines_for_subscriptions(
        subscription_ids=[i.subscription_id for i in invoices if i.subscription_id]
    )
    progress(20)
    for invoice in invoices:
        breakdown = sorted(invoice.tax_lines.all(), key=lambda t: (t.jurisdiction, t.rate))
        data.documents.append(
            {
                "document": "invoice",
                "number": invoice.number,
                "date": invoice.issued_at.date().isoformat(),
                "customer_id": invoice.customer_id,
                "customer": invoice.billing_legal_name or invoice.customer.name,
                "vat_id": _vat_ids(invoice),
                "po_number": invoice.po_number,
                "status": invoice.status,
                "currency": invoice.currency,
                "net": _money(invoice.subtotal_minor, invoice.currency),
                "tax": _money(invoice.tax_minor, invoice.currency),
                "gross": _money(invoice.total_minor, invoice.currency),
                "tax_by_rate": "; ".join(
                    _rate_text(t.jurisdiction, t.name, t.rate, _money(t.tax_amount_minor, invoice.currency))
                    for t in breakdown
                ),
                "refers_to": "",
                "reference": "reverse charge" if invoice.reverse_charge else invoice.exemption_reference,
            }
        )
        for t in breakdown:
            data.tax.append(
                {
                    "document": "invoice",
                    "number": invoice.number,
                    "currency": invoice.currency,
                    "jurisdiction": t.jurisdiction,
                    "tax_name": t.name,
                    "rate_percent": t.rate,
                    "taxable": _money(t.taxable_amount_minor, invoice.currency),
                    "tax": _money(t.tax_amount_minor, invoice.currency),
                }
            )
        for line in invoice.lines.all():
            data.lines.append(
                {
                    "document": "invoice",
                    "number": invoice.number,
                    "status": invoice.status,
                    "currency": invoice.currency,
                    "description": line.description,
                    "sku": line.sku_code,
                    "tax_category": line.tax_category,
                    "package": _package_of(invoice, line.period_start, timelines),
                    "period_start": line.period_start.date().isoformat() if line.period_start else "",
                    "period_end": line.period_end.date().isoformat() if line.period_end else "",
                    "proration": line.is_proration,
                    "quantity": line.quantity,
                    "net": _money(line.amount_minor, invoice.currency),
                    "tax_rate_percent": line.tax_rate,
                }
            )
    progress(40)
    credit_notes = list(
        CreditNote.objects.filter(issued_at__gte=since, issued_at__lt=until)
        .select_related("invoice__customer", "invoice__subscription__package")
        .prefetch_related(
            Prefetch("lines", queryset=CreditNoteLine.objects.select_related("invoice_line").order_by("pk"))
        )
        .order_by("issued_at", "pk")
    )
    missing = {n.invoice.subscription_id for n in credit_notes if n.invoice.subscription_id} - set(timelines)
    timelines.update(package_timelines_for_subscriptions(subscription_ids=missing))
    for note in credit_notes:
        invoice = note.invoice
        jurisdictions = {(t.name, t.rate): t.jurisdiction for t in invoice.tax_lines.all()}
        by_rate: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        for line in note.lines.all():
            by_rate[(line.tax_name, line.tax_rate)][0] += line.amount_minor
            by_rate[(line.tax_name, line.tax_rate)][1] += line.tax_minor
        data.documents.append(
            {
                "document": "credit_note",
                "number": note.number,
                "date": note.issued_at.date().isoformat(),
                "customer_id": note.customer_id,
                "customer": invoice.billing_legal_name or invoice.customer.name,
                "vat_id": _vat_ids(invoice),
                "po_number": invoice.po_number,
                "status": "issued",
                "currency": note.currency,
                "net": -_money(note.subtotal_minor, note.currency),
                "tax": -_money(note.tax_minor, note.currency),
                "gross": -_money(note.total_minor, note.currency),
                "tax_by_rate": "; ".join(
                    _rate_text(jurisdictions.get(key, ""), key[0], key[1], -_money(amounts[1], note.currency))
                    for key, amounts in sorted(by_rate.items(), key=lambda item: (str(item[0][0]), item[0][1]))
                ),
                "refers_to": invoice.number,
                "reference": note.get_reason_code_display(),
            }
        )
        for key, (taxable, tax) in by_rate.items():
            data.tax.append(
                {
                    "document": "credit_note",
                    "number": note.number,
                    "currency": note.currency,
                    "jurisdiction": jurisdictions.get(key, ""),
                    "tax_name": key[0],
                    "rate_percent": key[1],
                    "taxable": -_money(taxable, note.currency),
                    "tax": -_money(tax, note.currency),
                }
            )
        for line in note.lines.all():
            source = line.invoice_line
            data.lines.append(
                {
                    "document": "credit_note",
                    "number": note.number,
                    "status": "issued",
                    "currency": note.currency,
                    "description": line.description,
                    "sku": source.sku_code if source else "",
                    "tax_category": source.tax_category if source else "",
                    "package": _package_of(invoice, source.period_start if source else None, timelines),
                    "period_start": source.period_start.date().isoformat() if source and source.period_start else "",
                    "period_end": source.period_end.date().isoformat() if source and source.period_end else "",
                    "proration": source.is_proration if source else False,
                    "quantity": line.quantity,
                    "net": -_money(line.amount_minor, note.currency),
                    "tax_rate_percent": line.tax_rate,
                }
            )
    progress(60)
    payments = list(
        Payment.objects.annotate(on=Coalesce("applied_at", "created_at"))
        .filter(status=PaymentStatus.SUCCEEDED, on__gte=since, on__lt=until)
        .select_related("invoice__customer")
        .order_by("on", "pk")
    )
    for payment in payments:
        data.documents.append(
            _money_movement(
                "payment",
                f"PAY-{payment.pk}",
                payment.on,
                payment,
                payment.invoice,
                _money(payment.amount_minor, payment.currency),
                customer_id=payment.customer_id,
                refers_to=payment.invoice.number,
                reference=payment.reference or payment.stripe_charge_id or payment.get_kind_display(),
            )
        )
    refunds = list(
        Refund.objects.filter(created_at__gte=since, created_at__lt=until)
        .select_related("credit_note__invoice__customer")
        .order_by("created_at", "pk")
    )
    for refund in refunds:
        data.documents.append(
            _money_movement(
                "refund",
                f"REF-{refund.pk}",
                refund.created_at,
                refund,
                refund.credit_note.invoice,
                -_money(refund.amount_minor, refund.currency),
                customer_id=refund.credit_note.invoice.customer_id,
                refers_to=refund.credit_note.number,
                reference=refund.reference or refund.stripe_refund_id,
            )
        )
    progress(75)
    data.revenue = _revenue_schedule(invoices, timelines)
    data.balance = _balance(invoices, until)
    progress(90)
    return data


def _revenue_schedule(invoices: list[Invoice], timelines: dict[int, PackageTimeline]) -> list[dict]:
    """Per month, currency, package and SKU: the net revenue the range's invoices recognise, less their credit notes
    (a credited line is un-recognised over the same service period as the line it credits)."""
    totals: dict[tuple, int] = defaultdict(int)
    live = [invoice for invoice in invoices if invoice.status != InvoiceStatus.VOID]
    lines_by_id = {line.pk: (invoice, line) for invoice in live for line in invoice.lines.all()}
    for invoice, line in lines_by_id.values():
        for month, share in recognise_straight_line(
            line.amount_minor, start=line.period_start, end=line.period_end, issued_at=invoice.issued_at
        ):
            package = _package_of(invoice, line.period_start, timelines)
            totals[(month, invoice.currency, package, line.sku_code, line.tax_category)] += share
    credited = CreditNoteLine.objects.filter(invoice_line_id__in=list(lines_by_id)).values_list(
        "invoice_line_id", "amount_minor"
    )
    for line_id, amount in credited:
        invoice, line = lines_by_id[line_id]
        for month, share in recognise_straight_line(
            -amount, start=line.period_start, end=line.period_end, issued_at=invoice.issued_at
        ):
            package = _package_of(invoice, line.period_start, timelines)
            totals[(month, invoice.currency, package, line.sku_code, line.tax_category)] += share
    return [
        {
            "month": month.strftime("%Y-%m"),
            "currency": currency,
            "package": package,
            "sku": sku,
            "tax_category": category,
            "recognised": _money(amount, currency),
        }
        for (month, currency, package, sku, category), amount in sorted(totals.items())
    ]


def _balance(invoices: list[Invoice], until: datetime) -> list[dict]:
    """Per currency, for the (not void) invoices issued in the range, as the database holds them now:
    invoiced − credited = paid − refunded + outstanding. `difference` is zero when the books agree."""
    live = [invoice for invoice in invoices if invoice.status != InvoiceStatus.VOID]
    ids = [invoice.pk for invoice in live]
    sums: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for invoice in live:
        sums[invoice.currency]["invoiced"] += invoice.total_minor
        sums[invoice.currency]["outstanding"] += invoice.amount_due_minor
    for note in CreditNote.objects.filter(invoice_id__in=ids).only(
        "currency", "total_minor", "refund_due_minor", "issued_at"
    ):
        sums[note.currency]["credited"] += note.total_minor
        sums[note.currency]["refunded"] += note.refund_due_minor
        if note.issued_at >= until:
            sums[note.currency]["credited_after_range"] += note.total_minor
    payments = Payment.objects.filter(invoice_id__in=ids, status=PaymentStatus.SUCCEEDED).annotate(
        on=Coalesce("applied_at", "created_at")
    )
    for payment in payments.only("currency", "amount_minor"):
        sums[payment.currency]["paid"] += payment.amount_minor
        if payment.on >= until:
            sums[payment.currency]["paid_after_range"] += payment.amount_minor
    rows = []
    for currency, s in sorted(sums.items()):
        difference = s["invoiced"] - s["credited"] - s["paid"] + s["refunded"] - s["outstanding"]
        rows.append(
            {
                "currency": currency,
                "invoiced": _money(s["invoiced"], currency),
                "credited": _money(s["credited"], currency),
                "paid": _money(s["paid"], currency),
                "refunded_or_owed": _money(s["refunded"], currency),
                "outstanding": _money(s["outstanding"], currency),
                "difference": _money(difference, currency),
                "credited_after_range": _money(s["credited_after_range"], currency),
                "paid_after_range": _money(s["paid_after_range"], currency),
            }
        )
    return rows


# --- files ------------------------------------------------------------------------------------------------------------


def _cell(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def export_csv_zip(data: ExportData) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, rows in data.sheets().items():
            text = io.StringIO()
            if rows:
                writer = csv.DictWriter(text, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
            archive.writestr(f"{name}.csv", text.getvalue())
    return buffer.getvalue()


def export_xlsx(data: ExportData) -> bytes:
    from openpyxl import Workbook  # only the export task needs it

    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in data.sheets().items():
        sheet = workbook.create_sheet(title=name)
        if not rows:
            continue
        sheet.append(list(rows[0]))
        for row in rows:
            # Amounts are Decimals: openpyxl writes them as numbers, exact to the cent.
            sheet.append([_cell(value) for value in row.values()])
        sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- the use cases -------------------------------------------------------------------------------------------------


def accounting_export_request(*, actor: User, start, end, format: str = ExportFormat.XLSX) -> AccountingExport:  # noqa: A002
    """Queue an export of [start, end) (dates; at most two years) for billing staff; audited. The caller checks
    the `billing.run_accountingexport` permission (the admin does); the build runs on a worker."""
    if not isinstance(start, date) or not isinstance(end, date) or isinstance(start, datetime):
        raise ExportInvalid("Enter the first and the day after the last day of the range.", field="start")
    if end <= start:
        raise ExportInvalid("The range ends after it starts (the end date is exclusive).", field="end")
    if end - start > timedelta(days=MAX_RANGE_DAYS):
        raise ExportInvalid("Export at most two years at a time.", field="end")
    if format not in ExportFormat.values:
        raise ExportInvalid("Choose XLSX or CSV.", field="format")
    with transaction.atomic():
        export = AccountingExport.objects.create(requested_by=actor, start=start, end=end, format=format)
        audit_record(
            customer=None,
            actor=actor,
            action="accounting_export.requested",
            obj=export,
            summary=f"Accounting export {start.isoformat()} – {end.isoformat()} ({format}) requested",
            after={"start": start.isoformat(), "end": end.isoformat(), "format": format},
        )
        export_id = export.pk

        enqueue_on_commit("billing.accounting_export_build", export_id=export_id)
    return export


def accounting_export_build(*, export_id: int) -> AccountingExport:
    """Build the file of a queued (or failed) export, writing progress as it goes. A done export is left alone."""
    with transaction.atomic():
        export = AccountingExport.objects.select_for_update().get(pk=export_id)
        if export.status == ExportStatus.DONE:
            return export
        export.status, export.progress, export.error = ExportStatus.RUNNING, 5, ""
        export.save(update_fields=["status", "progress", "error"])

    def progress(percent: int) -> None:
        AccountingExport.objects.filter(pk=export_id).update(progress=percent)

    try:
        data = accounting_export_data(start=export.start, end=export.end, progress=progress)
        content = export_xlsx(data) if export.format == ExportFormat.XLSX else export_csv_zip(data)
    except Exception as exc:
        AccountingExport.objects.filter(pk=export_id).update(
            status=ExportStatus.FAILED, error=f"{exc.__class__.__name__}: {exc}"[:2000], finished_at=timezone.now()
        )
        raise
    extension = "xlsx" if export.format == ExportFormat.XLSX else "zip"
    with transaction.atomic():
        export = AccountingExport.objects.select_for_update().get(pk=export_id)
        export.file.save(f"accounting-{export.start}-{export.end}.{extension}", ContentFile(content), save=False)
        export.status, export.progress, export.finished_at = ExportStatus.DONE, 100, timezone.now()
        export.rows = sum(len(rows) for rows in data.sheets().values())
        export.save()
    return export


def accounting_export_downloaded(*, export: AccountingExport, actor: User) -> None:
    audit_record(
        customer=None,
        actor=actor,
        action="accounting_export.downloaded",
        obj=export,
        summary=f"Accounting export {export.start.isoformat()} – {export.end.isoformat()} downloaded",
    )
