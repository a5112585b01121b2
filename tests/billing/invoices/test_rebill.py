"""Void and re-bill (billing.services.invoices.rebill): the voided invoice keeps what it said, the period is billed
again exactly once on a new invoice from the corrected billing profile, and numbering stays gapless."""

import pytest
from django.db import IntegrityError, transaction

from billing.exceptions import InvalidTransition, ReasonCodeInvalid
from billing.models import Invoice, InvoiceStatus, PendingInvoiceItem
from billing.services.billing_run import draft_chunk
from billing.services.invoices import (
    invoice_apply_payment,
    invoice_finalize,
    invoice_void,
    invoice_void_and_rebill,
)
from billing.services.profiles import billing_profile_update
from tests.billing.conftest import established

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]


def _issued_period_invoice(customer, subscription, staff):
    established(customer, staff)
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    invoice = invoice_finalize(invoice_id=invoice_id)
    assert invoice.status == InvoiceStatus.OPEN
    return invoice


def _said(invoice):
    invoice.refresh_from_db()
    lines = [(line.description, line.quantity, line.amount_minor) for line in invoice.lines.order_by("pk")]
    return invoice.number, invoice.billing_legal_name, invoice.total_minor, invoice.tax_minor, lines


def test_void_and_rebill_of_an_open_period_invoice_bills_the_period_again_with_the_corrected_details(
    customer, subscription, ca_tax, staff
):
    invoice = _issued_period_invoice(customer, subscription, staff)
    before = _said(invoice)
    # the customer says the legal name on the invoice is wrong; billing staff fix the profile
    billing_profile_update(customer=customer, legal_name="Acme Holdings LLC")

    new = invoice_void_and_rebill(
        invoice_id=invoice.pk, reason_code="wrong_billing_details", reason="Customer: wrong legal name", actor=staff
    )

    # the voided invoice still says exactly what it said when issued, and carries the root cause
    assert _said(invoice) == before
    assert invoice.status == InvoiceStatus.VOID and invoice.void_reason_code == "wrong_billing_details"
    assert invoice.amount_due_minor == 0
    # the same period is billed again, once, with the corrected name and the same amounts, under the next number
    assert new.status == InvoiceStatus.OPEN
    assert (new.kind, new.period_start, new.period_end) == (invoice.kind, invoice.period_start, invoice.period_end)
    assert new.billing_legal_name == "Acme Holdings LLC"
    assert (new.total_minor, new.tax_minor) == (invoice.total_minor, invoice.tax_minor)
    assert int(new.number.rsplit("-", 1)[1]) == int(invoice.number.rsplit("-", 1)[1]) + 1
    live = Invoice.objects.filter(subscription=subscription, period_start=invoice.period_start).exclude(
        status=InvoiceStatus.VOID
    )
    assert list(live) == [new]
    # and the billing run does not bill the period a third time
    assert draft_chunk(subscription_ids=[subscription.pk]) == []


def test_void_and_rebill_refuses_a_paid_or_partly_paid_invoice_and_an_unknown_reason(
    customer, subscription, ca_tax, staff
):
    invoice = _issued_period_invoice(customer, subscription, staff)
    with pytest.raises(ReasonCodeInvalid):
        invoice_void_and_rebill(invoice_id=invoice.pk, reason_code="oops", actor=staff)
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=100, currency="USD", actor=staff)
    with pytest.raises(InvalidTransition, match="credit note"):
        invoice_void_and_rebill(invoice_id=invoice.pk, reason_code="wrong_billing_details", actor=staff)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert Invoice.objects.filter(subscription=subscription, period_start=invoice.period_start).count() == 1


def test_void_and_rebill_of_a_held_invoice_moves_its_mid_period_items_to_the_new_invoice(
    customer, subscription, ca_tax, staff
):
    established(customer, staff)
    billing_profile_update(customer=customer, requires_po=True)
    item = PendingInvoiceItem.objects.create(
        customer=customer,
        subscription=subscription,
        description="2 more seats (prorated)",
        quantity=2,
        unit_amount_minor=1_000,
        amount_minor=1_500,
        currency="USD",
    )
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    held = invoice_finalize(invoice_id=invoice_id)
    assert held.status == InvoiceStatus.HELD
    item.refresh_from_db()
    assert item.invoice_id == held.pk

    new = invoice_void_and_rebill(
        invoice_id=held.pk, reason_code="wrong_billing_details", po_number="PO-9", actor=staff
    )

    held.refresh_from_db()
    assert held.status == InvoiceStatus.VOID and held.number is None
    assert new.status == InvoiceStatus.OPEN and new.po_number == "PO-9"
    assert new.total_minor == held.total_minor
    item.refresh_from_db()
    assert item.invoice_id == new.pk  # billed once, by the new invoice; not waiting for the next one


def test_a_voided_period_invoice_leaves_room_for_exactly_one_live_invoice_of_the_period(
    customer, subscription, ca_tax, staff
):
    invoice = _issued_period_invoice(customer, subscription, staff)
    invoice_void(invoice_id=invoice.pk, reason_code="duplicate", actor=staff)
    Invoice.objects.create(
        customer=customer, subscription=subscription, kind="regular", currency="USD", period_start=invoice.period_start
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(
            customer=customer,
            subscription=subscription,
            kind="regular",
            currency="USD",
            period_start=invoice.period_start,
        )
