"""Credit notes on paid invoices give the paid part back (issue 7): to the card through a real localstripe on
127.0.0.1, or owed by bank transfer for invoices paid that way. The whole issuing flow runs: issue → automatic card
collection (Celery eager, after commit) → credit note → refund task (after commit)."""

import pytest

from billing.exceptions import PaymentInvalid
from billing.models import CreditNote, InvoiceStatus, PaymentKind, PaymentStatus, Refund, RefundStatus
from billing.services import payments
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from billing.tasks import credit_note_refund_task
from subscriptions.models import AuditEvent
from tests.billing.stripe_support import save_card

pytestmark = pytest.mark.django_db


def _issue(customer, staff, capture, amounts=(10_000, 5_000)):
    """Issue an invoice the way billing does; after commit it is e-mailed and collected from the default card."""
    draft = invoice_draft_create(
        customer=customer,
        currency="USD",
        lines=[DraftLine(description=f"Line {i}", unit_amount_minor=a) for i, a in enumerate(amounts)],
    )
    with capture(execute=True):
        invoice = invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)
    invoice.refresh_from_db()
    return invoice


def _credit(invoice, capture, *, lines=None, actor=None) -> CreditNote:
    with capture(execute=True):
        return credit_note_create(
            invoice_id=invoice.pk,
            reason_code="wrong_seat_count",
            reason_text="Too many seats",
            lines=lines,
            actor=actor,
        )


def _stripe_refunds(server, payment) -> list[dict]:
    charge = server.get(f"/v1/charges/{payment.stripe_charge_id}")
    return [r for r in server.get("/v1/refunds")["data"] if r["charge"] == charge["id"]]


def test_credit_note_on_card_paid_invoice_refunds_the_card_once(
    stripe_server, customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    # given: an invoice paid automatically by the saved card when it was issued
    save_card(stripe_server, customer=customer)
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    payment = invoice.payments.get()
    assert invoice.status == InvoiceStatus.PAID
    assert (payment.kind, payment.status, payment.amount_minor) == (PaymentKind.CARD, PaymentStatus.SUCCEEDED, 16_088)

    # when: billing staff credit the whole invoice
    note = _credit(invoice, django_capture_on_commit_callbacks, actor=staff)

    # then: the whole amount goes back to the card, once, and is recorded
    assert note.refund_due_minor == 16_088
    refund = Refund.objects.get(credit_note=note)
    assert (refund.status, refund.amount_minor, refund.payment_id) == (RefundStatus.SUCCEEDED, 16_088, payment.pk)
    remote = stripe_server.get(f"/v1/refunds/{refund.stripe_refund_id}")
    assert (remote["amount"], remote["metadata"]["credit_note_number"]) == (16_088, note.number)
    assert stripe_server.get(f"/v1/charges/{payment.stripe_charge_id}")["amount_refunded"] == 16_088
    assert AuditEvent.objects.filter(action="refund.succeeded", object_id=str(refund.pk)).count() == 1

    # when: the issuing flow's side effects run again (a redelivered task, a second enqueue)
    credit_note_refund_task.delay(note.pk)
    with django_capture_on_commit_callbacks(execute=True):
        payments.credit_note_refund_enqueue(credit_note_id=note.pk)

    # then: nothing is refunded twice
    assert Refund.objects.filter(credit_note=note).count() == 1
    assert len(_stripe_refunds(stripe_server, payment)) == 1
    assert stripe_server.get(f"/v1/charges/{payment.stripe_charge_id}")["amount_refunded"] == 16_088


def test_partial_credit_note_refunds_only_its_amount(
    stripe_server, customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    save_card(stripe_server, customer=customer)
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    payment = invoice.payments.get()
    seat_line = invoice.lines.order_by("position").last()

    first = _credit(
        invoice, django_capture_on_commit_callbacks, lines=[{"invoice_line_id": seat_line.pk, "amount_minor": 2_000}]
    )
    second = _credit(
        invoice, django_capture_on_commit_callbacks, lines=[{"invoice_line_id": seat_line.pk, "amount_minor": 1_000}]
    )

    # 20.00 + 7.25 % = 21.45, then 10.00 + 0.73 = 10.73: each refunded on its own, never more
    assert (first.total_minor, first.refund_due_minor, first.refund.amount_minor) == (2_145, 2_145, 2_145)
    assert (second.total_minor, second.refund_due_minor, second.refund.amount_minor) == (1_073, 1_073, 1_073)
    assert sorted(r["amount"] for r in _stripe_refunds(stripe_server, payment)) == [1_073, 2_145]
    assert stripe_server.get(f"/v1/charges/{payment.stripe_charge_id}")["amount_refunded"] == 3_218
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid_minor, invoice.amount_credited_minor) == ("paid", 16_088, 3_218)


def test_credit_note_on_open_invoice_lowers_what_is_due_and_refunds_nothing(
    stripe_server, customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    # No card saved: the invoice stays open, nothing has been paid.
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    assert invoice.status == InvoiceStatus.OPEN

    note = _credit(
        invoice,
        django_capture_on_commit_callbacks,
        lines=[{"invoice_line_id": invoice.lines.first().pk, "amount_minor": 2_000}],
    )

    assert note.refund_due_minor == 0
    assert not Refund.objects.exists()
    assert not AuditEvent.objects.filter(action="refund.owed").exists()
    invoice.refresh_from_db()
    assert invoice.amount_due_minor == 16_088 - 2_145


def test_credit_note_beyond_what_was_still_due_refunds_only_the_paid_part(
    customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    # given: 160.88 invoiced, 100.00 received by transfer, 60.88 still due
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    payments.payment_record_manual(invoice_id=invoice.pk, amount_minor=10_000, reference="BANK-1", actor=staff)

    # when: the whole 100.00 line (107.25 with tax) is credited
    note = _credit(
        invoice,
        django_capture_on_commit_callbacks,
        lines=[{"invoice_line_id": invoice.lines.order_by("position").first().pk, "amount_minor": 10_000}],
    )

    # then: 60.88 of it settles the rest of the invoice; 46.37 had been paid and is owed back
    assert (note.total_minor, note.refund_due_minor) == (10_725, 10_725 - 6_088)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due_minor) == (InvoiceStatus.PAID, 0)


def test_credit_note_on_transfer_paid_invoice_records_a_refund_owed_then_staff_record_the_transfer(
    settings, customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    # given: the manual backend; the invoice paid by bank transfer
    settings.STRIPE_SECRET_KEY = ""
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    transfer = payments.payment_record_manual(
        invoice_id=invoice.pk, amount_minor=invoice.total_minor, reference="BANK-IN-1", actor=staff
    )

    # when: part of it is credited
    note = _credit(
        invoice,
        django_capture_on_commit_callbacks,
        lines=[{"invoice_line_id": invoice.lines.first().pk, "amount_minor": 2_000}],
        actor=staff,
    )

    # then: the credit note says 21.45 is owed back, and the timeline tells billing staff to pay it by transfer
    assert note.refund_due_minor == 2_145
    assert not Refund.objects.exists()
    owed = AuditEvent.objects.get(action="refund.owed", customer=customer)
    assert "$21.45" in owed.summary and "bank transfer" in owed.summary

    # when: staff paid it and record the transfer (twice, as a double submit would)
    with pytest.raises(PaymentInvalid):
        payments.credit_note_refund_record_manual(credit_note_id=note.pk, reference=" ", actor=staff)
    refund = payments.credit_note_refund_record_manual(credit_note_id=note.pk, reference="BANK-OUT-7", actor=staff)
    with pytest.raises(PaymentInvalid, match="already refunded by transfer"):
        payments.credit_note_refund_record_manual(credit_note_id=note.pk, reference="BANK-OUT-7", actor=staff)

    # then: one succeeded refund against the transfer, audited with the staff member
    assert (refund.status, refund.amount_minor, refund.payment_id, refund.reference) == (
        RefundStatus.SUCCEEDED,
        2_145,
        transfer.pk,
        "BANK-OUT-7",
    )
    assert AuditEvent.objects.filter(action="refund.recorded", actor=staff).count() == 1
    # the card-refund task finds the recorded refund and does nothing more
    assert payments.credit_note_refund(credit_note_id=note.pk).pk == refund.pk


def test_transfer_paid_invoice_with_stripe_on_is_still_refunded_by_transfer(
    stripe_server, customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    save_card(stripe_server, customer=customer)
    draft = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="x", unit_amount_minor=5_000)]
    )
    invoice = invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)  # after-commit collection not run
    payments.payment_record_manual(
        invoice_id=invoice.pk, amount_minor=invoice.total_minor, reference="BANK-2", actor=staff
    )

    note = _credit(invoice, django_capture_on_commit_callbacks)

    assert note.refund_due_minor == invoice.total_minor
    assert not Refund.objects.exists()
    assert stripe_server.get("/v1/refunds")["data"] == []
    assert AuditEvent.objects.filter(action="refund.owed", object_id=str(note.pk)).exists()


def test_record_manual_refund_refuses_a_credit_note_with_nothing_due_back(
    customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    note = _credit(
        invoice,
        django_capture_on_commit_callbacks,
        lines=[{"invoice_line_id": invoice.lines.first().pk, "amount_minor": 100}],
    )

    with pytest.raises(PaymentInvalid, match="nothing goes back"):
        payments.credit_note_refund_record_manual(credit_note_id=note.pk, reference="BANK-3", actor=staff)


def _customer_sees(client, user, customer) -> tuple[str, list[dict]]:
    """The invoices page's text and the API's credit notes, as the customer's owner gets them."""
    client.force_login(user)
    page = client.get(f"/c/{customer.pk}/invoices/")
    assert page.status_code == 200
    api = client.get(f"/api/v1/customers/{customer.pk}/credit-notes/")
    assert api.status_code == 200
    return " ".join(page.content.decode().split()), api.json()["results"]


def test_customer_sees_money_going_back_to_their_card(
    client, stripe_server, customer, owner, staff, ca_tax, django_capture_on_commit_callbacks
):
    save_card(stripe_server, customer=customer)
    invoice = _issue(customer, staff, django_capture_on_commit_callbacks)
    note = _credit(
        invoice,
        django_capture_on_commit_callbacks,
        lines=[{"invoice_line_id": invoice.lines.first().pk, "amount_minor": 2_000}],
    )

    text, notes = _customer_sees(client, owner, customer)

    assert "$21.45 refunded to your card" in text
    assert notes[0]["number"] == note.number
    assert notes[0]["refund"] == {"amount": 2_145, "status": "refunded", "method": "card"}
    detail = " ".join(client.get(f"/c/{customer.pk}/invoices/{invoice.pk}/").content.decode().split())
    assert f"{note.number}</a> — $21.45" in detail and "$21.45 refunded to your card" in detail


def test_customer_sees_a_transfer_refund_pending_then_paid_and_a_credit_that_only_lowered_the_due(
    settings, client, customer, owner, staff, ca_tax, django_capture_on_commit_callbacks
):
    settings.STRIPE_SECRET_KEY = ""
    paid = _issue(customer, staff, django_capture_on_commit_callbacks)
    payments.payment_record_manual(invoice_id=paid.pk, amount_minor=paid.total_minor, reference="IN-1", actor=staff)
    owed = _credit(
        paid,
        django_capture_on_commit_callbacks,
        lines=[{"invoice_line_id": paid.lines.first().pk, "amount_minor": 2_000}],
    )
    unpaid = _issue(customer, staff, django_capture_on_commit_callbacks)
    _credit(
        unpaid,
        django_capture_on_commit_callbacks,
        lines=[{"invoice_line_id": unpaid.lines.first().pk, "amount_minor": 1_000}],
    )

    text, notes = _customer_sees(client, owner, customer)
    by_number = {n["number"]: n["refund"] for n in notes}
    assert by_number[owed.number] == {"amount": 2_145, "status": "pending", "method": None}
    assert "$21.45 to be refunded" in text
    assert "Credited against the amount due" in text
    assert sorted(r["status"] for r in by_number.values()) == ["none", "pending"]

    payments.credit_note_refund_record_manual(credit_note_id=owed.pk, reference="OUT-1", actor=staff)

    text, notes = _customer_sees(client, owner, customer)
    assert {n["number"]: n["refund"] for n in notes}[owed.number] == {
        "amount": 2_145,
        "status": "refunded",
        "method": "bank_transfer",
    }
    assert "$21.45 refunded by bank transfer" in text
