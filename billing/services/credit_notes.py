"""Credit notes: the only way to correct an issued invoice (partial or full), numbered CN-YYYY-000001, reason-coded.

Tax on a credit note mirrors the invoice: per rate, credited net × the rate copied on the invoice line, rounded
half-up once per rate. A full credit note credits exactly what is left of the invoice (net and tax).

Money back: the part of a credit note the customer had already paid (`refund_due_minor`) is refunded — to the card
through Stripe when the invoice was paid by card, otherwise it is owed by bank transfer (docs/payments.md, Refunds).
The part that only lowers what was still due is never refunded.
"""

from collections import defaultdict
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from billing.exceptions import CreditNoteInvalid, InvalidTransition
from billing.models import CreditNote, CreditNoteLine, InvoiceLine, InvoiceStatus, LineKind
from billing.services.events import credit_note_event_record
from billing.services.invoices import correction_reason_check, invoice_lock, invoice_transition, number_allocate
from billing.services.payments import credit_note_refund_enqueue, money
from billing.services.tax import tax_amount
from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models import User
from subscriptions.services.audit import audit_record

CREDITABLE = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)


def credit_note_create(
    *,
    invoice_id: int,
    reason_code: str,
    reason_text: str = "",
    lines: list[dict] | None = None,
    actor: User | None = None,
) -> CreditNote:
    """Issue a credit note against an issued invoice.

    `lines=None` credits the whole invoice (only when nothing was credited yet). Otherwise `lines` is a list of
    {"invoice_line_id": int, "amount_minor": int (net, > 0), "quantity": int (optional), "description": optional};
    a line is never credited beyond its amount. The invoice's amount credited and amount due are updated; an open
    invoice with nothing left to pay becomes paid. Locks the invoice; the number comes from the CN-YYYY series.

    `refund_due_minor` records how much of the credit the customer had already paid (total − what was still due,
    never negative). When it is positive the refund is started with `credit_note_refund_enqueue`: a Stripe refund
    queued after commit for a card-paid invoice (at most once per credit note), else a "refund owed" audit event for
    billing staff to pay by bank transfer. After commit the credit note's PDF is rendered.
    """
    correction_reason_check(reason_code)
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if invoice.status not in CREDITABLE:
            raise InvalidTransition(
                f"Only issued invoices can be credited; invoice {invoice.number or invoice.pk} is {invoice.status}."
            )
        invoice_lines = {line.pk: line for line in invoice.lines.all()}
        # What was actually charged for a line: its amount plus the discount lines that follow it (a discount line
        # itself is never credited on its own). docs/billing-rules.md, "Discounts".
        charged: dict[int, int] = {}
        owner = None
        for line in sorted(invoice_lines.values(), key=lambda item: (item.position, item.pk)):
            if line.kind == LineKind.DISCOUNT and owner is not None:
                charged[owner] += line.amount_minor
                charged[line.pk] = 0
                continue
            owner = line.pk
            charged[owner] = line.amount_minor
        credited_per_line = dict(
            CreditNoteLine.objects.filter(credit_note__invoice=invoice, invoice_line__isnull=False)
            .values("invoice_line")
            .annotate(total=Sum("amount_minor"))
            .values_list("invoice_line", "total")
        )
        is_full = lines is None
        if is_full:
            if invoice.amount_credited_minor:
                raise CreditNoteInvalid("Part of this invoice is already credited; credit the remaining lines instead.")
            requested = [
                {"invoice_line_id": pk, "amount_minor": line.amount_minor, "quantity": line.quantity}
                for pk, line in invoice_lines.items()
                if line.amount_minor != 0
            ]
        else:
            requested = lines
        if not requested:
            raise CreditNoteInvalid("Choose at least one line to credit.")
        prepared: list[tuple[InvoiceLine, int, int, str]] = []
        for item in requested:
            line = invoice_lines.get(item.get("invoice_line_id"))
            if line is None:
                raise CreditNoteInvalid("A credited line does not belong to this invoice.", field="lines")
            amount = item.get("amount_minor")
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise CreditNoteInvalid("Credit amounts are whole numbers of minor units.", field="lines")
            if not is_full:
                if amount <= 0:
                    raise CreditNoteInvalid("Credit amounts must be positive.", field="lines")
                left = charged[line.pk] - credited_per_line.get(line.pk, 0)
                if amount > left:
                    raise CreditNoteInvalid(
                        f"“{line.description}” has {left} left to credit; {amount} is too much.", field="lines"
                    )
            prepared.append((line, amount, int(item.get("quantity") or line.quantity), item.get("description") or ""))
        if is_full:
            subtotal, tax = invoice.subtotal_minor, invoice.tax_minor
            per_line_tax = {line.pk: 0 for line, *_ in prepared}
        else:
            by_rate: dict[Decimal, int] = defaultdict(int)
            for line, amount, _, _ in prepared:
                by_rate[Decimal(line.tax_rate)] += amount
            subtotal = sum(amount for _, amount, _, _ in prepared)
            tax = sum(tax_amount(taxable_minor=net, rate_percent=rate) for rate, net in by_rate.items())
            per_line_tax = {
                line.pk: tax_amount(taxable_minor=amount, rate_percent=Decimal(line.tax_rate))
                for line, amount, _, _ in prepared
            }
        total = subtotal + tax
        if total <= 0:
            raise CreditNoteInvalid("The credit note total must be positive.")
        if total > invoice.total_minor - invoice.amount_credited_minor:
            raise CreditNoteInvalid(
                f"Only {invoice.total_minor - invoice.amount_credited_minor} is left to credit on {invoice.number}."
            )
        # What the customer had already paid of this credit comes back to them; the rest only lowers what is due.
        still_due = max(0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor)
        refund_due = max(0, total - still_due)
        now = timezone.now()
        series = f"CN-{now.year}"
        credit_note = CreditNote.objects.create(
            invoice=invoice,
            customer=invoice.customer,
            number=f"{series}-{number_allocate(series=series):06d}",
            series=series,
            currency=invoice.currency,
            reason_code=reason_code,
            reason_text=reason_text.strip(),
            subtotal_minor=subtotal,
            tax_minor=tax,
            total_minor=total,
            is_full=is_full,
            refund_due_minor=refund_due,
            issued_at=now,
            created_by=actor,
        )
        CreditNoteLine.objects.bulk_create(
            CreditNoteLine(
                credit_note=credit_note,
                invoice_line=line,
                description=(description or f"Credit: {line.description}")[:300],
                quantity=quantity,
                amount_minor=amount,
                tax_rate=line.tax_rate,
                tax_name=line.tax_name,
                tax_minor=per_line_tax[line.pk],
            )
            for line, amount, quantity, description in prepared
        )
        invoice.amount_credited_minor += total
        invoice.amount_due_minor = max(
            0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor
        )
        if invoice.status == InvoiceStatus.OPEN and invoice.amount_due_minor == 0:
            invoice.paid_at = now
            invoice_transition(
                invoice, InvoiceStatus.PAID, actor=actor, reason=f"Settled by credit note {credit_note.number}."
            )
        invoice.save()
        audit_record(
            customer=invoice.customer,
            actor=actor,
            action="credit_note.issued",
            obj=credit_note,
            summary=f"Credit note {credit_note.number} for {invoice.number}: {money(total, invoice.currency)}"
            + (f", of which {money(refund_due, invoice.currency)} goes back to the customer" if refund_due else ""),
            after={
                "reason_code": reason_code,
                "total_minor": total,
                "refund_due_minor": refund_due,
                "invoice": invoice.number,
            },
            reason=reason_text,
        )
        credit_note_event_record(credit_note)
        credit_note_id = credit_note.pk
        transaction.on_commit(lambda: _after_issue(credit_note_id))
        if refund_due:
            credit_note_refund_enqueue(credit_note_id=credit_note_id, actor=actor)
    return credit_note


def _after_issue(credit_note_id: int) -> None:
    enqueue_on_commit("billing.credit_note_render_pdf", credit_note_id=credit_note_id)
