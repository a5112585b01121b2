"""Invoices and credit notes whose after-issue hand-off a broker outage lost are delivered by the periodic sweep."""

from datetime import timedelta

import pytest
import time_machine
from celery import current_app
from django.core import mail
from django.utils import timezone

from billing.models import CreditNote, Invoice, Payment
from billing.services.credit_notes import credit_note_create
from billing.services.delivery_sweep import issued_documents_sweep
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from tests.subscriptions.test_dispatch import broker_down  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db


def _issue(customer, staff):
    draft = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Consulting", unit_amount_minor=10_000)]
    )
    return invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)


@pytest.mark.usefixtures("broker_down")
def test_an_invoice_issued_while_the_broker_was_down_is_e_mailed_by_the_sweep(
    customer, staff, django_capture_on_commit_callbacks
):
    # given: the invoice is issued, its after-issue task (PDF, e-mail, collection) refused by the broker
    with django_capture_on_commit_callbacks(execute=True):
        invoice = _issue(customer, staff)
    assert mail.outbox == []
    assert not Invoice.objects.get(pk=invoice.pk).email_sent_at

    # when: the broker is back; within the grace period the sweep leaves it alone, after it the invoice is sent
    current_app.conf.task_always_eager = True
    assert issued_documents_sweep().invoices == []
    with time_machine.travel(timezone.now() + timedelta(minutes=11), tick=False):
        result = issued_documents_sweep()

    # then: e-mailed once, with its PDF, to the billing e-mail; a second sweep sends nothing more
    assert result.invoices == [invoice.pk]
    assert [message.to for message in mail.outbox] == [["ap@acme.test"]]
    assert mail.outbox[0].attachments[0][0] == f"{invoice.number}.pdf"
    sent = Invoice.objects.get(pk=invoice.pk)
    assert sent.email_sent_at and sent.pdf_sha256
    with time_machine.travel(timezone.now() + timedelta(minutes=22), tick=False):
        assert issued_documents_sweep().invoices == []
    assert len(mail.outbox) == 1


def test_the_sweep_never_restarts_an_invoice_whose_collection_began_nor_old_ones(customer, staff):
    invoice = _issue(customer, staff)  # its after-issue callback never runs here (the test's transaction)
    Invoice.objects.filter(pk=invoice.pk).update(email_sent_at=None)  # e.g. no recipient could be mailed then
    Payment.objects.create(
        invoice=invoice, customer=customer, attempt=1, amount_minor=10_000, currency="USD", kind="card", status="failed"
    )
    with time_machine.travel(timezone.now() + timedelta(minutes=11), tick=False):
        assert issued_documents_sweep().invoices == []
    other = _issue(customer, staff)
    Invoice.objects.filter(pk=other.pk).update(email_sent_at=None)
    with time_machine.travel(timezone.now() + timedelta(days=8), tick=False):
        assert issued_documents_sweep().invoices == []  # outside the window: not retried forever
    assert mail.outbox == []  # the sweep sent neither


@pytest.mark.usefixtures("broker_down")
def test_a_credit_note_whose_pdf_hand_off_was_lost_gets_its_pdf_from_the_sweep(
    customer, staff, django_capture_on_commit_callbacks
):
    current_app.conf.task_always_eager = True
    invoice = _issue(customer, staff)
    current_app.conf.task_always_eager = False
    with django_capture_on_commit_callbacks(execute=True):
        note = credit_note_create(
            invoice_id=invoice.pk,
            lines=[{"invoice_line_id": invoice.lines.get().pk, "amount_minor": 2_000}],
            reason_code="wrong_price",
            actor=staff,
        )
    assert not CreditNote.objects.get(pk=note.pk).pdf_sha256

    current_app.conf.task_always_eager = True
    with time_machine.travel(timezone.now() + timedelta(minutes=11), tick=False):
        assert issued_documents_sweep().credit_notes == [note.pk]
    assert CreditNote.objects.get(pk=note.pk).pdf_sha256
