"""The buttons of the invoice review page: each one a form (if staff type anything), the billing service it calls,
and the permission it needs. `InvoiceAdmin.invoice_action_view` dispatches to them by name and nothing else; the
rows of `billing.admin.ADMIN_ACTIONS` for them are made from this table."""

from dataclasses import dataclass
from decimal import Decimal

from django import forms
from django.shortcuts import get_object_or_404

from billing.admin.base import AmountField, money, to_minor
from billing.models import EDITABLE_STATUSES, CorrectionReason, Invoice, InvoiceLine, InvoiceStatus
from billing.services.credit_notes import credit_note_create
from billing.services.documents import invoice_send_issued_email
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
from billing.services.payments import payment_record_manual
from subscriptions import policy
from subscriptions.admin import Button


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


def _recheck(request, invoice: Invoice, data: dict) -> str:
    invoice = invoice_finalize(invoice_id=invoice.pk, actor=request.user)
    if invoice.status == InvoiceStatus.HELD:
        return f"Checks re-run: still held ({', '.join(r['code'] for r in invoice.hold_reasons)})."
    return f"Checks re-run: all passed; issued as {invoice.number}."


def _approve(request, invoice: Invoice, data: dict) -> str:
    invoice = invoice_approve_and_issue(invoice_id=invoice.pk, actor=request.user, note=data.get("note", ""))
    return f"Approved and issued as {invoice.number}."


def _resend_email(request, invoice: Invoice, data: dict) -> str:
    if not invoice_send_issued_email(invoice_id=invoice.pk, force=True, actor=request.user):
        raise forms.ValidationError("No e-mail was sent: the customer has no billing e-mail address.")
    return f"Invoice {invoice.number} e-mailed again."


def _void(request, invoice: Invoice, data: dict) -> str:
    invoice_void(invoice_id=invoice.pk, reason_code=data["reason_code"], reason=data["reason"], actor=request.user)
    return f"Invoice {invoice} voided."


def _write_off(request, invoice: Invoice, data: dict) -> str:
    invoice_mark_uncollectible(invoice_id=invoice.pk, reason=data["reason"], actor=request.user)
    return f"Invoice {invoice} written off as uncollectible."


def _mark_paid(request, invoice: Invoice, data: dict) -> str:
    # A Payment row (kind "manual") and the invoice settlement, in one service (billing.services.payments).
    amount = to_minor(data["amount"], invoice.currency)
    payment_record_manual(invoice_id=invoice.pk, amount_minor=amount, reference=data["reference"], actor=request.user)
    return f"Payment of {money(amount, invoice.currency)} recorded on {invoice}."


def _credit_lines(request, invoice: Invoice) -> list[dict]:
    """The per-line amounts typed on the page (`credit_<line id>`), in minor units; empty fields are skipped."""
    lines = []
    for line in invoice.lines.all():
        raw = (request.POST.get(f"credit_{line.pk}") or "").strip()
        if raw:
            try:
                amount = Decimal(raw)
            except ArithmeticError:
                raise forms.ValidationError(f"“{raw}” is not an amount.")
            lines.append({"invoice_line_id": line.pk, "amount_minor": to_minor(amount, invoice.currency)})
    return lines


def _credit_note(request, invoice: Invoice, data: dict) -> str:
    note = credit_note_create(
        invoice_id=invoice.pk,
        reason_code=data["reason_code"],
        reason_text=data["reason_text"],
        lines=None if data["full"] else _credit_lines(request, invoice),
        actor=request.user,
    )
    message = f"Credit note {note.number} issued for {money(note.total_minor, note.currency)}."
    if note.refund_due_minor:
        message += (
            f" {money(note.refund_due_minor, note.currency)} of it had been paid and goes back to the customer"
            " (refunded to the card, or owed by bank transfer: see the credit note)."
        )
    return message


def _line_add(request, invoice: Invoice, data: dict) -> str:
    invoice_line_add(
        invoice_id=invoice.pk,
        line=DraftLine(
            description=data["description"],
            quantity=data["quantity"],
            unit_amount_minor=to_minor(data["unit_amount"], invoice.currency),
        ),
        actor=request.user,
        expected_version=data["expected_version"],
    )
    return "Line added; tax recomputed."


def _posted_line(request, invoice: Invoice) -> InvoiceLine:
    return get_object_or_404(InvoiceLine, pk=request.POST.get("line_id"), invoice=invoice)


def _line_update(request, invoice: Invoice, data: dict) -> str:
    invoice_line_update(
        line_id=_posted_line(request, invoice).pk,
        actor=request.user,
        expected_version=data["expected_version"],
        description=data["description"],
        quantity=data["quantity"],
        unit_amount_minor=to_minor(data["unit_amount"], invoice.currency),
    )
    return "Line saved; tax recomputed."


def _line_remove(request, invoice: Invoice, data: dict) -> str:
    line = _posted_line(request, invoice)
    invoice_line_remove(line_id=line.pk, actor=request.user, expected_version=data["expected_version"])
    return "Line removed; tax recomputed."


@dataclass(frozen=True, kw_only=True)
class InvoiceAction(Button):
    label: str
    statuses: tuple[str, ...]


_INVOICES = "billing.services.invoices"
CORRECTABLE = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)

REVIEW, LINES = policy.Action.INVOICES_REVIEW, "billing.%s_invoiceline"
VOIDABLE = (InvoiceStatus.DRAFT, InvoiceStatus.HELD, InvoiceStatus.OPEN)
PAYABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
CREDIT_NOTE = "billing.services.credit_notes.credit_note_create"
MANUAL_PAYMENT = "billing.services.payments.payment_record_manual"
EMAIL = "billing.services.documents.invoice_send_issued_email"


def _action(name, label, form, run, service, allowed_by, statuses) -> InvoiceAction:
    """`allowed_by`: a policy action, or a model permission ("app.codename") where the policy has none."""
    by_policy = allowed_by in policy.POLICY
    return InvoiceAction(
        name=name,
        label=label,
        form=form,
        run=run,
        service=service if "." in service else f"{_INVOICES}.{service}",
        policy=allowed_by if by_policy else None,
        permission=None if by_policy else allowed_by,
        statuses=statuses,
    )


# name, label, form, run, service (in billing.services.invoices unless dotted), policy action or permission, statuses
INVOICE_ACTIONS: dict[str, InvoiceAction] = {
    action.name: action
    for action in [
        _action("recheck", "Re-run checks", None, _recheck, "invoice_finalize", REVIEW, EDITABLE_STATUSES),
        _action(
            "approve",
            "Approve and issue",
            ApproveForm,
            _approve,
            "invoice_approve_and_issue",
            REVIEW,
            EDITABLE_STATUSES,
        ),
        _action("void", "Void", VoidForm, _void, "invoice_void", REVIEW, VOIDABLE),
        _action(
            "credit_note",
            "Create a credit note",
            CreditNoteForm,
            _credit_note,
            CREDIT_NOTE,
            policy.Action.CREDIT_NOTES_ISSUE,
            CORRECTABLE,
        ),
        _action(
            "mark_paid",
            "Mark paid (bank transfer)",
            MarkPaidForm,
            _mark_paid,
            MANUAL_PAYMENT,
            policy.Action.PAYMENTS_RECORD,
            PAYABLE,
        ),
        _action(
            "write_off",
            "Write off as uncollectible",
            WriteOffForm,
            _write_off,
            "invoice_mark_uncollectible",
            REVIEW,
            (InvoiceStatus.OPEN,),
        ),
        _action(
            "resend_email",
            "Resend the invoice e-mail",
            None,
            _resend_email,
            EMAIL,
            policy.Action.INVOICES_RESEND,
            CORRECTABLE,
        ),
        _action("line_add", "Add a line", LineForm, _line_add, "invoice_line_add", LINES % "add", EDITABLE_STATUSES),
        _action(
            "line_update",
            "Save line",
            LineForm,
            _line_update,
            "invoice_line_update",
            LINES % "change",
            EDITABLE_STATUSES,
        ),
        _action(
            "line_remove",
            "Remove line",
            LineRemoveForm,
            _line_remove,
            "invoice_line_remove",
            LINES % "delete",
            EDITABLE_STATUSES,
        ),
    ]
}


def invoice_actions_for(user, invoice: Invoice) -> dict[str, InvoiceAction]:
    return {
        name: action
        for name, action in INVOICE_ACTIONS.items()
        if invoice.status in action.statuses and action.allowed(user)
    }
