"""Billing quality per month (revenue metrics, issue 20): right first time with root causes, time to enablement."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from billing.models import Invoice, InvoiceKind, InvoiceStatus
from billing.services import revenue_metrics
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import (
    DraftLine,
    invoice_approve_and_issue,
    invoice_draft_create,
    invoice_finalize,
    invoice_set_po_number,
)
from subscriptions import clock
from subscriptions.models import ProvisioningRun, RunOutcome
from tests.clock import month_start
from tests.factories import BillingProfileFactory, CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def pinned():
    # Mid-month, so every fact below falls in the same month.
    with time_machine.travel(month_start() + timedelta(days=14, hours=12), tick=False):
        yield


def issue(customer, staff, amount):
    invoice = invoice_draft_create(
        customer=customer,
        currency=customer.currency,
        kind=InvoiceKind.MANUAL,
        lines=[DraftLine(description="Services", unit_amount_minor=amount)],
    )
    return invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)


def test_right_first_time_root_causes_and_enablement_percentiles(customer, staff, ca_tax):
    invoices = [issue(customer, staff, 10_000) for _ in range(4)]
    credit_note_create(invoice_id=invoices[0].pk, reason_code="wrong_price", actor=staff)
    now = clock.now()
    for minutes in (1, 2, 3, 10):  # succeeded runs: queued → finished
        ProvisioningRun.objects.create(
            customer=customer,
            outcome=RunOutcome.APPLIED,
            queued_at=now - timedelta(minutes=minutes),
            started_at=now - timedelta(minutes=minutes),
            finished_at=now,
        )
    ProvisioningRun.objects.create(customer=customer, outcome=RunOutcome.FAILED, queued_at=now, finished_at=now)

    revenue_metrics.revenue_months_update(now.date())
    summary = revenue_metrics.metrics_summary(end_month=now.date(), currency="USD", months=1)

    [quality] = summary.quality
    assert (quality.issued_invoices, quality.right_first_time) == (4, 3)
    assert quality.right_first_time_rate == Decimal("0.7500")
    assert quality.root_causes == (("wrong_price", 1),)
    assert quality.enablement_runs == 4  # the failed run is not an enablement
    assert (quality.enablement_p50_seconds, quality.enablement_p95_seconds) == (120, 600)  # nearest rank


def draft(customer, amount=10_000):
    return invoice_draft_create(
        customer=customer,
        currency=customer.currency,
        kind=InvoiceKind.MANUAL,
        lines=[DraftLine(description="Services", unit_amount_minor=amount)],
    )


def test_holds_by_check_count_each_reason_and_the_median_hold_to_release_time(staff, ca_tax):
    """Five invoices created in the month, four held by the pre-issue checks, three released at known times:
    a  PO required, none set (customer established)  held po_missing              → PO set after 1 h: issued
    b  a new customer                                held first_invoice           → approved after 3 h
    c  a new customer requiring a PO                 held po_missing, first_invoice → PO set after 2 h (still
       held, first_invoice), approved after 5 h: one hold of 5 h, both reasons counted
    d  a new customer                                held first_invoice           → still held (no release time)
    e  the invoice that established a's customer, approved and issued at once (never held)
    Holds by check: first_invoice 3 (b c d), po_missing 2 (a c) of 5 created; median of 1 h, 3 h, 5 h = 3 h."""
    established = CustomerFactory(name="Established")
    BillingProfileFactory(customer=established, requires_po=True)
    new_customers = [CustomerFactory(name=f"New {n}") for n in "BCD"]
    for new in new_customers:
        BillingProfileFactory(customer=new, requires_po=new.name == "New C")
    start = clock.now()

    e = draft(established)
    e.po_number = "PO-0"
    e.save(update_fields=["po_number"])
    invoice_approve_and_issue(invoice_id=e.pk, actor=staff)
    a, b, c, d = draft(established), *(draft(new) for new in new_customers)
    for invoice in (a, b, c, d):
        invoice_finalize(invoice_id=invoice.pk)
    holds = {name: Invoice.objects.get(pk=inv.pk) for name, inv in zip("abcd", (a, b, c, d), strict=True)}
    assert {name: inv.status for name, inv in holds.items()} == dict.fromkeys("abcd", InvoiceStatus.HELD)
    assert [r["code"] for r in holds["c"].hold_reasons] == ["po_missing", "first_invoice"]

    with time_machine.travel(start + timedelta(hours=1), tick=False):
        invoice_set_po_number(invoice_id=a.pk, po_number="PO-1")  # the checks pass now: issued
    with time_machine.travel(start + timedelta(hours=2), tick=False):
        invoice_set_po_number(invoice_id=c.pk, po_number="PO-2")  # still held: first invoice
    with time_machine.travel(start + timedelta(hours=3), tick=False):
        invoice_approve_and_issue(invoice_id=b.pk, actor=staff)
    with time_machine.travel(start + timedelta(hours=5), tick=False):
        invoice_approve_and_issue(invoice_id=c.pk, actor=staff)
    assert Invoice.objects.get(pk=a.pk).status == InvoiceStatus.OPEN and not Invoice.objects.get(pk=a.pk).hold_reasons
    assert Invoice.objects.get(pk=c.pk).status == InvoiceStatus.OPEN
    assert Invoice.objects.get(pk=d.pk).status == InvoiceStatus.HELD

    revenue_metrics.revenue_months_update(start.date())
    [quality] = revenue_metrics.metrics_summary(end_month=start.date(), currency="USD", months=1).quality
    assert (quality.created_invoices, quality.held_invoices) == (5, 4)
    assert quality.holds_by_check == (
        ("first_invoice", 3, Decimal("0.6000")),
        ("po_missing", 2, Decimal("0.4000")),  # a's reason counts although its release cleared it
    )
    assert quality.hold_release_median_seconds == 3 * 3600
    assert (quality.issued_invoices, quality.right_first_time) == (4, 4)  # e, a, b, c
