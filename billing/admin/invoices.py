"""Invoices: the held-invoice review queue and the review page (lines, tax, the diff against the previous invoice,
the buttons of billing.admin.invoice_actions), pending items and the number sequences, all read-only."""

from datetime import timedelta

from django.contrib import admin, messages
from django.db.models import Max, Q
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html_join

from billing.admin.base import OwnPages, ReadOnlyAdmin, ReadOnlyInline, einvoice_validation_summary, money
from billing.admin.invoice_actions import (
    INVOICE_ACTIONS,
    ApproveForm,
    CreditNoteForm,
    MarkPaidForm,
    VoidForm,
    WriteOffForm,
    invoice_actions_for,
)
from billing.exceptions import BillingError
from billing.models import (
    HoldReason,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceStatus,
    InvoiceStatusChange,
    PendingInvoiceItem,
)
from billing.selectors import invoice_diff_against_previous
from billing.services.invoices import invoice_approve_and_issue
from subscriptions import policy
from subscriptions.admin import run_button
from subscriptions.money import minor_to_major


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

    select_related = ("invoice",)


class InvoiceStatusChangeInline(ReadOnlyInline):
    model = InvoiceStatusChange
    fields = ["created_at", "from_status", "to_status", "actor", "reason"]
    readonly_fields = fields

    select_related = ("actor",)


@admin.register(Invoice)
class InvoiceAdmin(OwnPages, ReadOnlyAdmin):
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
    readonly_fields = ["hold_reason_list", "total", "due", "e_invoice_result"]
    fieldsets = [
        (None, {"fields": ["customer", "subscription", "kind", "number", "status", "hold_reason_list", "po_number"]}),
        ("Amounts", {"fields": ["total", "due", "currency", "period_start", "period_end", "issued_at", "due_on"]}),
        ("Copied billing details", {"fields": ["billing_legal_name", "billing_address", "billing_country"]}),
        ("E-invoice (Factur-X EN 16931)", {"fields": ["e_invoice", "e_invoice_result"]}),
        ("Void", {"fields": ["void_reason_code", "void_reason", "voided_at"]}),
    ]

    @admin.display(description="validation")
    def e_invoice_result(self, invoice) -> str:
        return einvoice_validation_summary(invoice.e_invoice_validation, e_invoiced=invoice.e_invoice)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(held_since=Max("status_changes__created_at", filter=Q(status_changes__to_status="held")))
        )

    actions = ["approve_and_issue_selected"]

    own_pages = (("<int:invoice_id>/action/<slug:action>/", "invoice_action_view", "billing_invoice_action"),)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if invoice is not None and self.has_view_permission(request, invoice):
            extra_context["review"] = invoice_review_context(invoice)
            extra_context["available"] = invoice_actions_for(request.user, invoice)
            extra_context["void_form"] = VoidForm()
            extra_context["credit_form"] = CreditNoteForm()
            extra_context["paid_form"] = MarkPaidForm(
                initial={"amount": minor_to_major(invoice.amount_due_minor, invoice.currency)}
            )
            extra_context["write_off_form"] = WriteOffForm()
            extra_context["approve_form"] = ApproveForm()
        return super().change_view(request, object_id, form_url, extra_context)

    def invoice_action_view(self, request, invoice_id: int, action: str):
        """POST only; 403 unless the user holds the action's permission (a crafted POST is refused the same way)."""
        return run_button(
            request,
            INVOICE_ACTIONS,
            action,
            load=lambda: get_object_or_404(Invoice.objects.select_related("customer"), pk=invoice_id),
            redirect_to=lambda invoice: reverse("admin:billing_invoice_change", args=[invoice.pk]),
            refused=(BillingError,),
        )

    def has_approve_permission(self, request) -> bool:
        return policy.staff_allows(request.user, policy.Action.INVOICES_REVIEW, in_admin=True)

    @admin.action(description="Approve and issue the selected held invoices", permissions=["approve"])
    def approve_and_issue_selected(self, request, queryset):
        issued, refused = [], []
        for invoice in queryset.order_by("id"):
            try:
                issued.append(str(invoice_approve_and_issue(invoice_id=invoice.pk, actor=request.user)))
            except BillingError as error:
                refused.append(f"{invoice}: {error.message}")
        if issued:
            messages.success(request, f"Issued {len(issued)}: {', '.join(issued)}.")
        for line in refused:
            messages.error(request, line)

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


def invoice_review_context(invoice: Invoice) -> dict:
    lines = list(invoice.lines.all())
    tax_lines = list(invoice.tax_lines.all())
    comparison = invoice_diff_against_previous(invoice=invoice)
    previous = comparison["previous"]
    return {
        "invoice": invoice,
        "einvoice": einvoice_validation_summary(invoice.e_invoice_validation, e_invoiced=invoice.e_invoice),
        "lines": [
            {
                "line": line,
                "unit": money(line.unit_amount_minor, invoice.currency),
                "unit_plain": money(line.unit_amount_minor, invoice.currency).split(" ", 1)[1].replace(",", ""),
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
        "diff": [
            {
                **row,
                "change": (
                    "added"
                    if not row["previous_quantity"] and not row["previous_minor"]
                    else "removed"
                    if not row["current_quantity"] and not row["current_minor"]
                    else "changed"
                    if row["delta_minor"] or row["previous_quantity"] != row["current_quantity"]
                    else "unchanged"
                ),
                "previous": money(row["previous_minor"], invoice.currency),
                "current": money(row["current_minor"], invoice.currency),
                "delta": money(row["delta_minor"], invoice.currency),
            }
            for row in comparison["rows"]
        ],
        "delta_total": money(comparison["delta_total_minor"], invoice.currency),
        "hold_reasons": invoice.hold_reasons or [],
    }
