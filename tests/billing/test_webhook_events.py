"""Billing records its outbound events in the transaction of the change, with a per-object sequence."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from billing.services.events import invoices_overdue_record
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from billing.services.payments import payment_record_manual
from subscriptions.models import Event
from tests.support.event_schemas import assert_events_match_schemas

pytestmark = pytest.mark.django_db


def _issued(customer, staff):
    draft = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Work", unit_amount_minor=10_000)]
    )
    invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)
    draft.refresh_from_db()
    return draft


def test_invoice_events_in_order_with_sequence(customer, staff, ca_tax):
    invoice = _issued(customer, staff)
    payment_record_manual(invoice_id=invoice.pk, amount_minor=invoice.total_minor, reference="BANK-1", actor=staff)
    events = list(Event.objects.filter(object_type="invoice", object_id=str(invoice.pk)).order_by("sequence"))
    assert [(e.type, e.sequence) for e in events] == [("invoice.issued", 1), ("invoice.paid", 2)]
    assert events[0].data["status"] == "open" and events[1].data["amount_due_minor"] == 0
    payment = Event.objects.get(type="payment.succeeded")
    assert payment.customer_id == customer.pk and payment.data["amount_minor"] == invoice.total_minor
    assert assert_events_match_schemas() >= 3


def test_invoices_overdue_record_once_per_invoice(customer, staff, ca_tax):
    invoice = _issued(customer, staff)
    assert invoices_overdue_record(today=invoice.due_on) == 0  # due today is not overdue
    later = invoice.due_on + timedelta(days=1)
    assert invoices_overdue_record(today=later) == 1
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        assert invoices_overdue_record(today=later + timedelta(days=1)) == 0
    [overdue] = Event.objects.filter(type="invoice.overdue")
    assert overdue.object_id == str(invoice.pk) and overdue.data["due_on"] == invoice.due_on.isoformat()
