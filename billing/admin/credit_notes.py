"""Credit notes, read-only, and what comes back to the customer (docs/payments.md, Refunds): billing staff record
the bank transfer they paid, or resend a card refund Stripe did not take."""

from django import forms
from django.contrib import admin
from django.shortcuts import get_object_or_404
from django.urls import reverse

from billing.admin.base import OwnPages, ReadOnlyAdmin, ReadOnlyInline, einvoice_validation_summary, money
from billing.exceptions import BillingError
from billing.models import CreditNote, CreditNoteLine, Refund, RefundStatus
from billing.services.payments import credit_note_refund, credit_note_refund_record_manual
from subscriptions import policy
from subscriptions.admin import Button, run_button

REFUNDS = policy.Action.REFUNDS_RECORD


class RefundTransferForm(forms.Form):
    reference = forms.CharField(max_length=120, label="Bank reference of the refund")


def _record_transfer(request, note: CreditNote, data: dict) -> str:
    refund = credit_note_refund_record_manual(credit_note_id=note.pk, reference=data["reference"], actor=request.user)
    return f"Refund of {money(refund.amount_minor, refund.currency)} by transfer recorded on {note}."


def _resend_card_refund(request, note: CreditNote, data: dict) -> str:
    refund = credit_note_refund(credit_note_id=note.pk, actor=request.user)
    if refund is None:
        raise forms.ValidationError(f"{note} has nothing to refund to a card.")
    return f"Card refund for {note}: {refund.get_status_display().lower()}."


REFUND_ACTIONS = {
    button.name: button
    for button in [
        Button(
            name="transfer",
            form=RefundTransferForm,
            run=_record_transfer,
            service="billing.services.payments.credit_note_refund_record_manual",
            policy=REFUNDS,
        ),
        Button(
            name="card",
            form=None,
            run=_resend_card_refund,
            service="billing.services.payments.credit_note_refund",
            policy=REFUNDS,
        ),
    ]
}


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = ["description", "quantity", "amount_minor", "tax_name", "tax_rate", "tax_minor"]
    readonly_fields = fields


@admin.register(CreditNote)
class CreditNoteAdmin(OwnPages, ReadOnlyAdmin):
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

    own_pages = (("<int:credit_note_id>/refund/<slug:how>/", "refund_view", "billing_creditnote_refund"),)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        note = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if note is not None and policy.staff_allows(request.user, REFUNDS, in_admin=True) and note.refund_due_minor > 0:
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
        """POST only, policy `refunds.record` (billing staff): record the refund transfer, or resend a pending card
        refund (same Stripe idempotency key, so never a second refund)."""
        return run_button(
            request,
            REFUND_ACTIONS,
            how,
            load=lambda: get_object_or_404(CreditNote, pk=credit_note_id),
            redirect_to=lambda note: reverse("admin:billing_creditnote_change", args=[note.pk]),
            refused=(BillingError,),
        )

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
