"""Billing back office: the held-invoice review queue, invoice detail, credit notes, tax rates and exemption review.

No money or status field is editable here, for anyone: every state change is an action that calls a billing
service (which locks the row, checks the transition table and audits). Issued invoices and credit notes are
read-only. Permissions come from portal/migrations/0002_billing_groups.py.
"""

from datetime import timedelta
from decimal import Decimal

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Q
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing.models import (
    BillingProfile,
    CreditNote,
    CreditNoteLine,
    ExemptionStatusChange,
    HoldReason,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceStatus,
    InvoiceStatusChange,
    PendingInvoiceItem,
    TaxExemption,
    TaxRate,
)

INLINE_CERTIFICATE_TYPES = ("application/pdf", "image/png", "image/jpeg")
_MINOR_DIGITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "JOD": 3, "OMR": 3, "TND": 3}


def money(amount_minor: int | None, currency: str) -> str:
    """Staff-facing amount: "USD 1,234.50" (unambiguous across currencies; no locale guessing in the back office)."""
    if amount_minor is None:
        return ""
    digits = _MINOR_DIGITS.get((currency or "").upper(), 2)
    value = Decimal(int(amount_minor)).scaleb(-digits)
    return f"{currency} {value:,.{digits}f}"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Invoices --------------------------------------------------------------------------------------------------------


class HoldReasonFilter(admin.SimpleListFilter):
    title = "hold reason"
    parameter_name = "hold_reason"

    def lookups(self, request, model_admin):
        return HoldReason.choices

    def queryset(self, request, queryset):
        value = self.value()
        if value in HoldReason.values:
            # hold_reasons is [{code, message}]; the quoted code matches the JSON text on SQLite and PostgreSQL.
            return queryset.filter(hold_reasons__icontains=f'"{value}"')
        return queryset


class HeldAgeFilter(admin.SimpleListFilter):
    title = "held for"
    parameter_name = "held_for"
    AGES = {"1d": ("more than a day", 1), "3d": ("more than 3 days", 3), "7d": ("more than a week", 7)}

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.AGES.items()]

    def queryset(self, request, queryset):
        if self.value() in self.AGES:
            cutoff = timezone.now() - timedelta(days=self.AGES[self.value()][1])
            return queryset.filter(status=InvoiceStatus.HELD, held_since__lt=cutoff)
        return queryset


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = ["position", "description", "sku_code", "quantity", "unit", "amount", "tax_name", "tax_rate", "period"]
    readonly_fields = fields

    @admin.display(description="unit amount")
    def unit(self, line) -> str:
        return money(line.unit_amount_minor, line.invoice.currency)

    @admin.display(description="amount")
    def amount(self, line) -> str:
        return money(line.amount_minor, line.invoice.currency)

    @admin.display(description="period")
    def period(self, line) -> str:
        if not line.period_start:
            return ""
        return f"{line.period_start:%Y-%m-%d} → {line.period_end:%Y-%m-%d}" if line.period_end else ""

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice")


class InvoiceStatusChangeInline(ReadOnlyInline):
    model = InvoiceStatusChange
    fields = ["created_at", "from_status", "to_status", "actor", "reason"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    change_form_template = "admin/billing/invoice/review.html"
    list_display = [
        "__str__",
        "customer",
        "status",
        "kind",
        "total",
        "due",
        "hold_reason_list",
        "held_since",
        "issued_at",
    ]
    list_filter = ["status", HoldReasonFilter, HeldAgeFilter, "kind", "currency"]
    list_select_related = ["customer"]
    search_fields = ["number", "customer__name", "customer__legal_name", "po_number"]
    inlines = [InvoiceStatusChangeInline]
    readonly_fields = ["hold_reason_list", "total", "due"]
    fieldsets = [
        (None, {"fields": ["customer", "subscription", "kind", "number", "status", "hold_reason_list", "po_number"]}),
        ("Amounts", {"fields": ["total", "due", "currency", "period_start", "period_end", "issued_at", "due_on"]}),
        ("Copied billing details", {"fields": ["billing_legal_name", "billing_address", "billing_country"]}),
        ("Void", {"fields": ["void_reason_code", "void_reason", "voided_at"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(held_since=Max("status_changes__created_at", filter=Q(status_changes__to_status="held")))
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if invoice is not None and self.has_view_permission(request, invoice):
            extra_context["review"] = invoice_review_context(invoice)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="total", ordering="total_minor")
    def total(self, invoice) -> str:
        return money(invoice.total_minor, invoice.currency)

    @admin.display(description="due", ordering="amount_due_minor")
    def due(self, invoice) -> str:
        return money(invoice.amount_due_minor, invoice.currency)

    @admin.display(description="hold reasons")
    def hold_reason_list(self, invoice) -> str:
        reasons = invoice.hold_reasons or []
        if not reasons:
            return "—"
        return format_html_join(
            "",
            "<div>{}</div>",
            ((r.get("message") or r.get("code", "") if isinstance(r, dict) else r,) for r in reasons),
        )

    @admin.display(description="held since", ordering="held_since")
    def held_since(self, invoice):
        return invoice.held_since if invoice.status == InvoiceStatus.HELD else None


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = ["description", "quantity", "amount_minor", "tax_name", "tax_rate", "tax_minor"]
    readonly_fields = fields


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    list_display = ["number", "invoice", "customer", "reason_code", "total", "issued_at", "created_by"]
    list_filter = ["reason_code", "currency"]
    list_select_related = ["invoice", "customer", "created_by"]
    search_fields = ["number", "invoice__number", "customer__name"]
    inlines = [CreditNoteLineInline]

    @admin.display(description="total", ordering="total_minor")
    def total(self, note) -> str:
        return money(note.total_minor, note.currency)


@admin.register(PendingInvoiceItem)
class PendingInvoiceItemAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "customer", "description", "amount", "invoice"]
    list_select_related = ["customer", "invoice"]
    search_fields = ["customer__name", "description"]

    @admin.display(description="amount")
    def amount(self, item) -> str:
        return money(item.amount_minor, item.currency)


@admin.register(InvoiceNumberSequence)
class InvoiceNumberSequenceAdmin(ReadOnlyAdmin):
    list_display = ["series", "last_value", "updated_at"]


# --- Tax -------------------------------------------------------------------------------------------------------------


@admin.register(TaxRate)
class TaxRateAdmin(admin.ModelAdmin):
    """Billing staff manage rates; invoices copy rate and name when computed, so edits never alter issued ones."""

    list_display = ["name", "country", "region", "rate", "tax_categories", "effective_from", "effective_to"]
    list_filter = ["country"]
    search_fields = ["name", "country", "region"]

    def has_delete_permission(self, request, obj=None) -> bool:
        # End a rate with effective_to; deleting would lose which rate an old draft was computed with.
        return request.user.is_superuser


class ExemptionStatusChangeInline(ReadOnlyInline):
    model = ExemptionStatusChange
    fields = ["created_at", "from_status", "to_status", "actor", "reason"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


@admin.register(TaxExemption)
class TaxExemptionAdmin(ReadOnlyAdmin):
    list_display = [
        "certificate_number",
        "customer",
        "exemption_type",
        "jurisdiction_list",
        "status",
        "expires_on",
        "submitted_at",
        "reviewer",
    ]
    list_filter = ["status", "exemption_type"]
    list_select_related = ["customer", "reviewer"]
    search_fields = ["certificate_number", "customer__name", "customer__legal_name"]
    exclude = ["certificate"]
    inlines = [ExemptionStatusChangeInline]
    change_form_template = "admin/billing/taxexemption/review.html"

    def get_urls(self):
        return [
            path(
                "<int:exemption_id>/certificate/",
                self.admin_site.admin_view(self.certificate_view),
                name="billing_taxexemption_certificate",
            ),
        ] + super().get_urls()

    def certificate_view(self, request, exemption_id: int):
        """The certificate file, only for those allowed to review exemptions (support agents are not)."""
        exemption = get_object_or_404(TaxExemption, pk=exemption_id)
        if not self.has_view_permission(request, exemption):
            raise PermissionDenied
        try:
            handle = exemption.certificate.open("rb")
        except (FileNotFoundError, ValueError):
            raise Http404("The certificate file is missing.")
        content_type = exemption.certificate_content_type
        inline = content_type in INLINE_CERTIFICATE_TYPES
        response = FileResponse(
            handle,
            content_type=content_type if inline else "application/octet-stream",
            as_attachment=not inline,
            filename=exemption.original_filename or f"certificate-{exemption.pk}",
        )
        # Shown in a frame on the review page only: our own pages may frame it, nothing may run inside it.
        response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; frame-ancestors 'self'"
        response["X-Frame-Options"] = "SAMEORIGIN"
        response["Cache-Control"] = "private, no-store"
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        exemption = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if exemption is not None:
            extra_context["exemption"] = exemption
            extra_context["certificate_is_image"] = exemption.certificate_content_type.startswith("image/")
            extra_context["certificate_inline"] = exemption.certificate_content_type in INLINE_CERTIFICATE_TYPES
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="jurisdictions")
    def jurisdiction_list(self, exemption) -> str:
        return ", ".join(str(j) for j in exemption.jurisdictions or [])


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnlyAdmin):
    list_display = ["customer", "legal_name", "country", "region", "tax_id", "tax_id_valid", "requires_po"]
    list_filter = ["country", "requires_po", "change_billing_mode"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "legal_name", "tax_id"]

    @admin.display(description="billing e-mails")
    def emails(self, profile) -> str:
        return format_html("{}", ", ".join(profile.billing_emails or []))


# --- Invoice review page ---------------------------------------------------------------------------------------------


def previous_invoice(invoice: Invoice) -> Invoice | None:
    """The customer's invoice before this one (void ones skipped): what the reviewer compares against."""
    return (
        Invoice.objects.filter(customer_id=invoice.customer_id, created_at__lte=invoice.created_at)
        .exclude(pk=invoice.pk)
        .exclude(status=InvoiceStatus.VOID)
        .order_by("-created_at", "-id")
        .prefetch_related("lines")
        .first()
    )


def _line_key(line) -> tuple[str, str]:
    return (line.sku_code or "", line.description if not line.sku_code else line.kind)


def invoice_diff(*, current: Invoice, previous: Invoice | None) -> list[dict]:
    """Line-by-line comparison keyed by SKU (or description): added, removed, changed or unchanged rows."""
    if previous is None:
        return []
    before = {_line_key(line): line for line in previous.lines.all()}
    after = {_line_key(line): line for line in current.lines.all()}
    rows = []
    for key in list(after) + [k for k in before if k not in after]:
        old, new = before.get(key), after.get(key)
        if old is None:
            change = "added"
        elif new is None:
            change = "removed"
        elif (old.quantity, old.amount_minor) != (new.quantity, new.amount_minor):
            change = "changed"
        else:
            change = "unchanged"
        rows.append(
            {
                "description": (new or old).description,
                "sku_code": (new or old).sku_code,
                "change": change,
                "old_quantity": old.quantity if old else "",
                "new_quantity": new.quantity if new else "",
                "old_amount": money(old.amount_minor, previous.currency) if old else "",
                "new_amount": money(new.amount_minor, current.currency) if new else "",
            }
        )
    return rows


def invoice_review_context(invoice: Invoice) -> dict:
    lines = list(invoice.lines.all())
    tax_lines = list(invoice.tax_lines.all())
    previous = previous_invoice(invoice)
    return {
        "invoice": invoice,
        "lines": [
            {
                "line": line,
                "unit": money(line.unit_amount_minor, invoice.currency),
                "amount": money(line.amount_minor, invoice.currency),
            }
            for line in lines
        ],
        "tax_lines": [
            {
                "line": tax,
                "taxable": money(tax.taxable_amount_minor, invoice.currency),
                "tax": money(tax.tax_amount_minor, invoice.currency),
            }
            for tax in tax_lines
        ],
        "subtotal": money(invoice.subtotal_minor, invoice.currency),
        "tax_total": money(invoice.tax_minor, invoice.currency),
        "total": money(invoice.total_minor, invoice.currency),
        "due": money(invoice.amount_due_minor, invoice.currency),
        "previous": previous,
        "previous_total": money(previous.total_minor, previous.currency) if previous else "",
        "diff": invoice_diff(current=invoice, previous=previous),
        "hold_reasons": invoice.hold_reasons or [],
    }
