"""Billing back office: the held-invoice review queue, invoice detail, credit notes, tax rates and exemption review.

No money or status field is editable here, for anyone: every state change is an action that calls a billing
service (which locks the row, checks the transition table and audits). Issued invoices and credit notes are
read-only. Permissions come from portal/migrations/0002_billing_groups.py.
"""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Q
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing.exceptions import BillingError
from billing.models import (
    EDITABLE_STATUSES,
    BillingProfile,
    CorrectionReason,
    CreditNote,
    CreditNoteLine,
    DunningCase,
    ExemptionStatus,
    ExemptionStatusChange,
    HoldReason,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceStatus,
    InvoiceStatusChange,
    Payment,
    PaymentMethod,
    PendingInvoiceItem,
    Refund,
    RefundStatus,
    StripeCustomer,
    StripeEvent,
    StripeEventStatus,
    TaxExemption,
    TaxRate,
)
from billing.selectors import invoice_diff_against_previous
from billing.services.credit_notes import credit_note_create
from billing.services.documents import invoice_send_issued_email
from billing.services.exemptions import tax_exemption_approve, tax_exemption_reject
from billing.services.invoices import (
    DraftLine,
    invoice_approve_and_issue,
    invoice_finalize,
    invoice_line_add,
    invoice_line_remove,
    invoice_line_update,
    invoice_mark_uncollectible,
    invoice_void,
)
from billing.services.payments import (
    credit_note_refund,
    credit_note_refund_record_manual,
    payment_record_manual,
)
from billing.services.profiles import EDITABLE_FIELDS as PROFILE_EDITABLE_FIELDS
from billing.services.profiles import billing_profile_update, billing_profile_validate, tax_id_normalize
from billing.services.stripe_events import stripe_event_retry
from subscriptions import policy
from subscriptions.admin import ReadOnlyAdmin
from subscriptions.admin import ReadOnlyInline as SubscriptionsReadOnlyInline
from subscriptions.money import format_money_staff, minor_digits, minor_to_major

INLINE_CERTIFICATE_TYPES = ("application/pdf", "image/png", "image/jpeg")
# Staff-facing amounts: "USD 1,234.50" (unambiguous across currencies; no locale guessing in the back office).
money = format_money_staff


class ReadOnlyInline(SubscriptionsReadOnlyInline):
    show_change_link = False


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

    def get_urls(self):
        return [
            path(
                "<int:invoice_id>/action/<slug:action>/",
                self.admin_site.admin_view(self.invoice_action_view),
                name="billing_invoice_action",
            ),
        ] + super().get_urls()

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
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        spec = INVOICE_ACTIONS.get(action)
        if spec is None:
            raise Http404("No such invoice action.")
        if not request.user.has_perm(spec.permission):
            raise PermissionDenied
        invoice = get_object_or_404(Invoice.objects.select_related("customer"), pk=invoice_id)
        try:
            message = _run_invoice_action(request, invoice, action)
        except BillingError as error:
            messages.error(request, error.message)
        except forms.ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, message)
        return HttpResponseRedirect(reverse("admin:billing_invoice_change", args=[invoice_id]))

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm("billing.change_invoice")

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


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = ["description", "quantity", "amount_minor", "tax_name", "tax_rate", "tax_minor"]
    readonly_fields = fields


class RefundTransferForm(forms.Form):
    reference = forms.CharField(max_length=120, label="Bank reference of the refund")


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    """Read-only; the part a customer had paid comes back (docs/payments.md, Refunds): billing staff see whether it
    went to the card, resend a card refund Stripe did not take, or record the bank transfer they paid."""

    change_form_template = "admin/billing/creditnote/change_form.html"
    list_display = [
        "number",
        "invoice",
        "customer",
        "reason_code",
        "total",
        "refund_due",
        "refund_state",
        "issued_at",
        "created_by",
    ]
    list_filter = ["reason_code", "currency"]
    list_select_related = ["invoice", "customer", "created_by", "refund"]
    search_fields = ["number", "invoice__number", "customer__name"]
    inlines = [CreditNoteLineInline]
    exclude = ["pdf_file", "pdf_sha256"]
    readonly_fields = ["total", "refund_due", "refund_state", "e_invoice_result"]

    @admin.display(description="e-invoice validation")
    def e_invoice_result(self, note) -> str:
        return einvoice_validation_summary(note.e_invoice_validation, e_invoiced=note.invoice.e_invoice)

    def get_urls(self):
        return [
            path(
                "<int:credit_note_id>/refund/<slug:how>/",
                self.admin_site.admin_view(self.refund_view),
                name="billing_creditnote_refund",
            ),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        note = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if note is not None and request.user.has_perm("billing.add_refund") and note.refund_due_minor > 0:
            refund = Refund.objects.filter(credit_note=note).first()
            if refund is None:
                extra_context["refund_transfer_form"] = RefundTransferForm()
            elif refund.status == RefundStatus.PENDING and not refund.reference:
                extra_context["can_resend_card_refund"] = True
        if note is not None:
            extra_context["credit_note"] = note
            extra_context["refund_due_text"] = self.refund_due(note)
            extra_context["refund_state_text"] = self.refund_state(note)
        return super().change_view(request, object_id, form_url, extra_context)

    def refund_view(self, request, credit_note_id: int, how: str):
        """POST only, `billing.add_refund` (billing staff): record the refund transfer, or resend a pending card
        refund (same Stripe idempotency key, so never a second refund)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if how not in ("transfer", "card"):
            raise Http404("No such refund action.")
        if not request.user.has_perm("billing.add_refund"):
            raise PermissionDenied
        note = get_object_or_404(CreditNote, pk=credit_note_id)
        try:
            if how == "transfer":
                form = RefundTransferForm(request.POST)
                if not form.is_valid():
                    raise forms.ValidationError(_form_errors(form))
                refund = credit_note_refund_record_manual(
                    credit_note_id=note.pk, reference=form.cleaned_data["reference"], actor=request.user
                )
                message = f"Refund of {money(refund.amount_minor, refund.currency)} by transfer recorded on {note}."
            else:
                refund = credit_note_refund(credit_note_id=note.pk, actor=request.user)
                if refund is None:
                    raise forms.ValidationError(f"{note} has nothing to refund to a card.")
                message = f"Card refund for {note}: {refund.get_status_display().lower()}."
        except BillingError as error:
            messages.error(request, error.message)
        except forms.ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, message)
        return HttpResponseRedirect(reverse("admin:billing_creditnote_change", args=[note.pk]))

    @admin.display(description="total", ordering="total_minor")
    def total(self, note) -> str:
        return money(note.total_minor, note.currency)

    @admin.display(description="due back", ordering="refund_due_minor")
    def refund_due(self, note) -> str:
        return money(note.refund_due_minor, note.currency) if note.refund_due_minor else "—"

    @admin.display(description="refund")
    def refund_state(self, note) -> str:
        if not note.refund_due_minor:
            return "nothing paid, nothing to refund"
        refund = getattr(note, "refund", None)
        if refund is None:
            return "owed by bank transfer (not recorded yet)"
        if refund.reference:
            return f"paid by transfer ({refund.reference})"
        state = f"to the card: {refund.get_status_display().lower()}"
        if refund.failure_message:
            state += f" ({refund.failure_message})"
        if refund.amount_minor < note.refund_due_minor:
            state += f"; {money(note.refund_due_minor - refund.amount_minor, note.currency)} more owed by transfer"
        return state


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


class ExemptionApproveForm(forms.Form):
    expires_on = forms.DateField(required=False, help_text="Correct the last valid day if the certificate differs.")
    note = forms.CharField(required=False, max_length=500)


class ExemptionRejectForm(forms.Form):
    reason = forms.CharField(max_length=1000, help_text="The customer sees this reason.")


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
            path(
                "<int:exemption_id>/decide/<slug:decision>/",
                self.admin_site.admin_view(self.decide_view),
                name="billing_taxexemption_decide",
            ),
        ] + super().get_urls()

    def decide_view(self, request, exemption_id: int, decision: str):
        """Approve (optionally correcting the expiry) or reject (with a reason the customer sees)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if decision not in ("approve", "reject"):
            raise Http404("No such decision.")
        if not request.user.has_perm("billing.change_taxexemption"):
            raise PermissionDenied
        exemption = get_object_or_404(TaxExemption, pk=exemption_id)
        form = (ExemptionApproveForm if decision == "approve" else ExemptionRejectForm)(request.POST)
        if not form.is_valid():
            messages.error(request, _form_errors(form))
            return HttpResponseRedirect(reverse("admin:billing_taxexemption_change", args=[exemption.pk]))
        try:
            if decision == "approve":
                tax_exemption_approve(
                    exemption_id=exemption.pk,
                    reviewer=request.user,
                    expires_on=form.cleaned_data["expires_on"],
                    note=form.cleaned_data["note"],
                )
            else:
                tax_exemption_reject(
                    exemption_id=exemption.pk, reviewer=request.user, reason=form.cleaned_data["reason"]
                )
        except BillingError as error:
            messages.error(request, error.message)
        else:
            messages.success(
                request,
                "Exemption approved; the customer's held and draft invoices were re-checked."
                if decision == "approve"
                else "Exemption rejected; the customer sees your reason.",
            )
        return HttpResponseRedirect(reverse("admin:billing_taxexemption_change", args=[exemption.pk]))

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
            if exemption.status == ExemptionStatus.SUBMITTED and request.user.has_perm("billing.change_taxexemption"):
                extra_context["approve_form"] = ExemptionApproveForm(initial={"expires_on": exemption.expires_on})
                extra_context["reject_form"] = ExemptionRejectForm()
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="jurisdictions")
    def jurisdiction_list(self, exemption) -> str:
        return ", ".join(str(j) for j in exemption.jurisdictions or [])


class BillingProfileForm(forms.ModelForm):
    """The profile fields billing staff may edit; checked by the same rules as the portal and the API
    (`billing_profile_validate`, `tax_id_normalize`), so a problem comes back on its field and nothing is saved."""

    billing_emails = forms.CharField(
        required=False,
        max_length=2000,
        help_text="Where invoices are sent; separate several with commas.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    class Meta:
        model = BillingProfile
        fields = list(PROFILE_EDITABLE_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["billing_emails"] = ", ".join(self.instance.billing_emails or [])

    def clean(self):
        cleaned = super().clean()
        data = {name: cleaned[name] for name in PROFILE_EDITABLE_FIELDS if name in cleaned}
        try:
            data = billing_profile_validate(data=data)
            if {"tax_id", "country"} & set(self.changed_data):  # as the service: only a changed ID is re-checked
                tax_id_normalize(tax_id=data.get("tax_id", ""), country=data.get("country", ""))
        except BillingError as error:
            field = error.field if error.field in self.fields else None
            self.add_error(field, error.message)
            return cleaned
        cleaned.update(data)
        return cleaned


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnlyAdmin):
    """Billing staff (and superusers) edit a customer's billing details here; support agents read them. Saving goes
    through `billing_profile_update` (validated, tax ID normalised, audited with before/after, Stripe customer
    synced): the form never writes the row itself."""

    form = BillingProfileForm
    list_display = ["customer", "legal_name", "country", "region", "tax_id", "tax_id_valid", "requires_po"]
    list_filter = ["country", "requires_po", "change_billing_mode"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "legal_name", "tax_id"]
    readonly_fields = ["customer", "tax_id_valid", "updated_at"]
    fieldsets = [
        (None, {"fields": ["customer", "legal_name", "billing_emails"]}),
        ("Address", {"fields": ["address_line1", "address_line2", "city", "region", "postal_code", "country"]}),
        ("Tax", {"fields": ["tax_id", "tax_id_valid"]}),
        ("E-invoices", {"fields": ["e_invoicing", "buyer_reference"]}),
        (
            "Invoicing",
            {
                "fields": [
                    "currency",
                    "payment_terms_days",
                    "invoice_language",
                    "standing_po_number",
                    "requires_po",
                    "change_billing_mode",
                    "updated_at",
                ]
            },
        ),
    ]

    def has_change_permission(self, request, obj=None) -> bool:
        return policy.staff_allows(request.user, policy.Action.BILLING_EDIT, in_admin=True)

    def save_model(self, request, obj, form, change):
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in PROFILE_EDITABLE_FIELDS}
        # The audit row names the staff member; the service writes the row (and queues the Stripe customer sync).
        billing_profile_update(customer=obj.customer, actor=request.user, **changed)

    @admin.display(description="billing e-mails")
    def emails(self, profile) -> str:
        return format_html("{}", ", ".join(profile.billing_emails or []))


def einvoice_validation_summary(validation: dict, *, e_invoiced: bool) -> str:
    """What staff read about a document's EN 16931 XML: passed (with warnings), or each failed rule."""
    if not e_invoiced:
        return "Not an e-invoice (plain PDF)."
    if not validation:
        return "Not validated yet: the XML is validated when the PDF is rendered (and before issue)."
    checked = validation.get("checked_at", "")[:19].replace("T", " ")
    if validation.get("valid"):
        return format_html(
            "Valid: XSD and EN 16931 Schematron, 0 failed assertions ({} warnings), checked {} UTC.",
            validation.get("warnings", 0),
            checked,
        )
    problems = validation.get("xsd_errors") or [f"{f['rule']}: {f['message']}" for f in validation.get("failed", [])]
    return format_html(
        "<strong>Invalid</strong> ({} UTC):<ul>{}</ul>",
        checked,
        format_html_join("", "<li>{}</li>", ((problem,) for problem in problems)),
    )


# --- Invoice review page ---------------------------------------------------------------------------------------------


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


# --- Invoice actions (billing staff; every one calls a billing service) --------------------------------------------


def to_minor(value: Decimal, currency: str) -> int:
    """A staff-typed amount ("1234.50") in the currency's minor unit; refuses more decimals than the currency has."""
    digits = minor_digits(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise forms.ValidationError(f"{currency} amounts have at most {digits} decimals.")
    return int(scaled)


class AmountField(forms.DecimalField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 3)
        super().__init__(**kwargs)


class ApproveForm(forms.Form):
    note = forms.CharField(required=False, max_length=500, label="Note (why the holds are fine)")


class VoidForm(forms.Form):
    reason_code = forms.ChoiceField(choices=CorrectionReason.choices, label="Root cause")
    reason = forms.CharField(max_length=1000, label="Reason")


class WriteOffForm(forms.Form):
    reason = forms.CharField(max_length=1000, label="Reason")


class MarkPaidForm(forms.Form):
    amount = AmountField(min_value=Decimal("0.001"), label="Amount received")
    reference = forms.CharField(max_length=120, label="Bank reference")


class CreditNoteForm(forms.Form):
    reason_code = forms.ChoiceField(choices=CorrectionReason.choices, label="Root cause")
    reason_text = forms.CharField(max_length=1000, label="Reason")
    full = forms.BooleanField(required=False, label="Credit the whole invoice")


class LineForm(forms.Form):
    description = forms.CharField(max_length=300)
    quantity = forms.IntegerField()
    unit_amount = AmountField(label="Unit amount")
    expected_version = forms.IntegerField()


class LineRemoveForm(forms.Form):
    expected_version = forms.IntegerField()


@dataclass(frozen=True)
class InvoiceAction:
    name: str
    label: str
    permission: str
    statuses: tuple[str, ...]


INVOICE_ACTIONS = {
    action.name: action
    for action in [
        InvoiceAction("recheck", "Re-run checks", "billing.change_invoice", EDITABLE_STATUSES),
        InvoiceAction("approve", "Approve and issue", "billing.change_invoice", EDITABLE_STATUSES),
        InvoiceAction(
            "void",
            "Void",
            "billing.change_invoice",
            (InvoiceStatus.DRAFT, InvoiceStatus.HELD, InvoiceStatus.OPEN),
        ),
        InvoiceAction(
            "credit_note",
            "Create a credit note",
            "billing.add_creditnote",
            (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE),
        ),
        InvoiceAction(
            "mark_paid",
            "Mark paid (bank transfer)",
            "billing.add_payment",
            (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
        ),
        InvoiceAction("write_off", "Write off as uncollectible", "billing.change_invoice", (InvoiceStatus.OPEN,)),
        InvoiceAction(
            "resend_email",
            "Resend the invoice e-mail",
            policy.rule_for(policy.Action.INVOICES_RESEND).staff_permission,
            (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE),
        ),
        InvoiceAction("line_add", "Add a line", "billing.add_invoiceline", EDITABLE_STATUSES),
        InvoiceAction("line_update", "Save line", "billing.change_invoiceline", EDITABLE_STATUSES),
        InvoiceAction("line_remove", "Remove line", "billing.delete_invoiceline", EDITABLE_STATUSES),
    ]
}


def invoice_actions_for(user, invoice: Invoice) -> dict[str, InvoiceAction]:
    return {
        name: action
        for name, action in INVOICE_ACTIONS.items()
        if invoice.status in action.statuses and user.has_perm(action.permission)
    }


def _form_errors(form: forms.Form) -> str:
    return " ".join(
        f"{'' if field == '__all__' else field + ': '}{' '.join(errors)}" for field, errors in form.errors.items()
    )


def _run_invoice_action(request, invoice: Invoice, name: str) -> str:
    """Run one action through its service; returns the success message. Raises BillingError or ValidationError."""
    post = request.POST
    user = request.user
    if name == "recheck":
        invoice = invoice_finalize(invoice_id=invoice.pk, actor=user)
        if invoice.status == InvoiceStatus.HELD:
            return f"Checks re-run: still held ({', '.join(r['code'] for r in invoice.hold_reasons)})."
        return f"Checks re-run: all passed; issued as {invoice.number}."
    if name == "approve":
        form = ApproveForm(post)
        form.is_valid()
        invoice = invoice_approve_and_issue(invoice_id=invoice.pk, actor=user, note=form.cleaned_data.get("note", ""))
        return f"Approved and issued as {invoice.number}."
    if name == "resend_email":
        sent = invoice_send_issued_email(invoice_id=invoice.pk, force=True, actor=user)
        if not sent:
            raise forms.ValidationError("No e-mail was sent: the customer has no billing e-mail address.")
        return f"Invoice {invoice.number} e-mailed again."
    form_class = {
        "void": VoidForm,
        "write_off": WriteOffForm,
        "mark_paid": MarkPaidForm,
        "credit_note": CreditNoteForm,
        "line_add": LineForm,
        "line_update": LineForm,
        "line_remove": LineRemoveForm,
    }[name]
    form = form_class(post)
    if not form.is_valid():
        raise forms.ValidationError(_form_errors(form))
    data = form.cleaned_data
    if name == "void":
        invoice_void(invoice_id=invoice.pk, reason_code=data["reason_code"], reason=data["reason"], actor=user)
        return f"Invoice {invoice} voided."
    if name == "write_off":
        invoice_mark_uncollectible(invoice_id=invoice.pk, reason=data["reason"], actor=user)
        return f"Invoice {invoice} written off as uncollectible."
    if name == "mark_paid":
        amount = to_minor(data["amount"], invoice.currency)
        record_bank_transfer(invoice=invoice, amount_minor=amount, reference=data["reference"], actor=user)
        return f"Payment of {money(amount, invoice.currency)} recorded on {invoice}."
    if name == "credit_note":
        lines = None
        if not data["full"]:
            lines = []
            for line in invoice.lines.all():
                raw = (post.get(f"credit_{line.pk}") or "").strip()
                if raw:
                    try:
                        amount = Decimal(raw)
                    except ArithmeticError:
                        raise forms.ValidationError(f"“{raw}” is not an amount.")
                    lines.append({"invoice_line_id": line.pk, "amount_minor": to_minor(amount, invoice.currency)})
        note = credit_note_create(
            invoice_id=invoice.pk,
            reason_code=data["reason_code"],
            reason_text=data["reason_text"],
            lines=lines,
            actor=user,
        )
        message = f"Credit note {note.number} issued for {money(note.total_minor, note.currency)}."
        if note.refund_due_minor:
            message += (
                f" {money(note.refund_due_minor, note.currency)} of it had been paid and goes back to the customer"
                " (refunded to the card, or owed by bank transfer: see the credit note)."
            )
        return message
    if name == "line_add":
        invoice_line_add(
            invoice_id=invoice.pk,
            line=DraftLine(
                description=data["description"],
                quantity=data["quantity"],
                unit_amount_minor=to_minor(data["unit_amount"], invoice.currency),
            ),
            actor=user,
            expected_version=data["expected_version"],
        )
        return "Line added; tax recomputed."
    line = get_object_or_404(InvoiceLine, pk=post.get("line_id"), invoice=invoice)
    if name == "line_update":
        invoice_line_update(
            line_id=line.pk,
            actor=user,
            expected_version=data["expected_version"],
            description=data["description"],
            quantity=data["quantity"],
            unit_amount_minor=to_minor(data["unit_amount"], invoice.currency),
        )
        return "Line saved; tax recomputed."
    invoice_line_remove(line_id=line.pk, actor=user, expected_version=data["expected_version"])
    return "Line removed; tax recomputed."


def record_bank_transfer(*, invoice: Invoice, amount_minor: int, reference: str, actor) -> None:
    # A Payment row (kind "manual") and the invoice settlement, in one service (billing.services.payments).
    payment_record_manual(invoice_id=invoice.pk, amount_minor=amount_minor, reference=reference, actor=actor)


# --- Payments and Stripe events ---------------------------------------------------------------


class RefundInline(ReadOnlyInline):
    model = Refund
    fk_name = "payment"
    fields = ["credit_note", "amount_minor", "currency", "status", "stripe_refund_id", "failure_message", "created_at"]
    readonly_fields = fields


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "invoice",
        "customer",
        "kind",
        "amount",
        "status",
        "reference",
        "stripe_payment_intent_id",
        "failure_message",
        "recorded_by",
    ]
    list_filter = ["status", "kind", "currency"]
    list_select_related = ["invoice", "customer", "recorded_by"]
    search_fields = ["invoice__number", "customer__name", "stripe_payment_intent_id", "stripe_charge_id", "reference"]
    date_hierarchy = "created_at"
    inlines = [RefundInline]

    @admin.display(description="amount", ordering="amount_minor")
    def amount(self, payment) -> str:
        return money(payment.amount_minor, payment.currency)


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ["customer", "stripe_customer_id", "synced_at", "created_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "stripe_customer_id"]


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["customer", "brand", "last4", "exp_month", "exp_year", "is_default", "removed_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "stripe_payment_method_id", "last4"]


@admin.register(DunningCase)
class DunningCaseAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "customer", "stage", "retries_done", "next_retry_at", "past_due_at", "closed_at"]
    list_filter = ["stage"]
    list_select_related = ["invoice", "customer"]
    search_fields = ["invoice__number", "customer__name"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    """Webhook events, read-only (as dj-stripe shows them); billing staff retry a failed one."""

    list_display = ["received_at", "type", "stripe_event_id", "object_id", "status", "attempts", "error"]
    list_filter = ["status", "type"]
    search_fields = ["stripe_event_id", "object_id", "type"]
    date_hierarchy = "received_at"
    actions = ["retry_selected"]

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("billing.change_stripeevent")

    @admin.action(description="Retry the selected failed events", permissions=["retry"])
    def retry_selected(self, request, queryset):
        for event in queryset.order_by("received_at", "id"):
            try:
                status = stripe_event_retry(event_id=event.pk, actor=request.user)
            except BillingError as error:
                messages.error(request, f"{event.stripe_event_id}: {error.message}")
            else:
                level = messages.SUCCESS if status != StripeEventStatus.FAILED else messages.ERROR
                messages.add_message(request, level, f"{event.stripe_event_id}: {status}.")


# Coupons, promotion codes and redemptions, and the accounting exports, live in modules of their own.
from billing import admin_discounts, admin_exports  # noqa: E402,F401
