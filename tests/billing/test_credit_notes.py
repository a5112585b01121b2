from datetime import date
from decimal import Decimal

import pytest

from billing.exceptions import CreditNoteInvalid, InvalidTransition, ReasonCodeInvalid
from billing.models import CreditNote, InvoiceStatus
from billing.selectors import right_first_time_by_month
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import (
    DraftLine,
    invoice_apply_payment,
    invoice_approve_and_issue,
    invoice_draft_create,
    invoice_void,
)

pytestmark = pytest.mark.django_db


def _issued(customer, staff, amounts=(10_000, 5_000)):
    invoice = invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[DraftLine(description=f"Line {i}", unit_amount_minor=a) for i, a in enumerate(amounts)],
    )
    return invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)


def test_credit_note_full_credits_everything_and_settles_open_invoice(customer, staff, ca_tax):
    invoice = _issued(customer, staff)
    assert invoice.total_minor == 16_088
    note = credit_note_create(invoice_id=invoice.pk, reason_code="duplicate", reason_text="Billed twice", actor=staff)
    assert note.number == f"CN-{note.issued_at.year}-000001"
    assert (note.subtotal_minor, note.tax_minor, note.total_minor, note.is_full) == (15_000, 1_088, 16_088, True)
    invoice.refresh_from_db()
    assert (invoice.amount_credited_minor, invoice.amount_due_minor, invoice.status) == (16_088, 0, InvoiceStatus.PAID)
    with pytest.raises(CreditNoteInvalid):
        credit_note_create(invoice_id=invoice.pk, reason_code="duplicate")


def test_credit_note_partial_taxes_at_the_invoice_line_rate(customer, staff, ca_tax):
    invoice = _issued(customer, staff)
    line = invoice.lines.order_by("position").first()
    ca_tax.rate = Decimal("9.00")  # a later rate change never alters the credit of an issued invoice
    ca_tax.save()
    note = credit_note_create(
        invoice_id=invoice.pk,
        reason_code="wrong_seat_count",
        lines=[{"invoice_line_id": line.pk, "amount_minor": 2_000, "quantity": 2}],
    )
    assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (2_000, 145, 2_145)
    assert note.lines.get().tax_rate == Decimal("7.2500")
    invoice.refresh_from_db()
    assert invoice.amount_due_minor == 16_088 - 2_145 and invoice.status == InvoiceStatus.OPEN
    numbers = [
        note.number,
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code="goodwill",
            lines=[{"invoice_line_id": line.pk, "amount_minor": 1_000}],
        ).number,
    ]
    assert numbers[1][-6:] == "000002"


def test_credit_note_never_exceeds_a_line(customer, staff):
    invoice = _issued(customer, staff)
    line = invoice.lines.order_by("position").first()
    credit_note_create(
        invoice_id=invoice.pk, reason_code="wrong_price", lines=[{"invoice_line_id": line.pk, "amount_minor": 9_000}]
    )
    with pytest.raises(CreditNoteInvalid, match="has 1000 left"):
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code="wrong_price",
            lines=[{"invoice_line_id": line.pk, "amount_minor": 1_001}],
        )
    assert CreditNote.objects.count() == 1


def test_credit_note_rejects_foreign_line_bad_amount_and_reason(customer, staff):
    invoice = _issued(customer, staff)
    other = _issued(customer, staff)
    foreign = other.lines.first()
    with pytest.raises(CreditNoteInvalid):
        credit_note_create(
            invoice_id=invoice.pk, reason_code="other", lines=[{"invoice_line_id": foreign.pk, "amount_minor": 1}]
        )
    line = invoice.lines.first()
    for amount in (0, -1, "5"):
        with pytest.raises(CreditNoteInvalid):
            credit_note_create(
                invoice_id=invoice.pk, reason_code="other", lines=[{"invoice_line_id": line.pk, "amount_minor": amount}]
            )
    with pytest.raises(ReasonCodeInvalid):
        credit_note_create(invoice_id=invoice.pk, reason_code="typo")
    assert not CreditNote.objects.exists()


def test_credit_note_refused_on_draft_and_void(customer, staff):
    draft = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="x", unit_amount_minor=100)]
    )
    with pytest.raises(InvalidTransition):
        credit_note_create(invoice_id=draft.pk, reason_code="other")
    voided = invoice_void(invoice_id=_issued(customer, staff).pk, reason_code="duplicate")
    with pytest.raises(InvalidTransition):
        credit_note_create(invoice_id=voided.pk, reason_code="other")


def test_credit_note_on_paid_invoice_keeps_it_paid(customer, staff):
    invoice = _issued(customer, staff)
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.total_minor)
    note = credit_note_create(invoice_id=invoice.pk, reason_code="service_issue", lines=None)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and note.total_minor == 15_000


def test_right_first_time_rate_per_month_with_leading_causes(customer, staff):
    invoices = [_issued(customer, staff) for _ in range(4)]
    credit_note_create(invoice_id=invoices[0].pk, reason_code="tax_exemption_missed")
    invoice_void(invoice_id=invoices[1].pk, reason_code="duplicate")
    line = invoices[2].lines.first()
    credit_note_create(
        invoice_id=invoices[2].pk,
        reason_code="tax_exemption_missed",
        lines=[{"invoice_line_id": line.pk, "amount_minor": 100}],
    )
    [month] = right_first_time_by_month(since=date(2026, 1, 1))
    assert month["issued"] == 4
    assert month["corrected"] == 3
    assert month["right_first_time"] == 0.25
    assert month["causes"] == [("tax_exemption_missed", 2), ("duplicate", 1)]
