"""Billing quality per month (revenue metrics, issue 20): right first time with root causes, time to enablement."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from billing.models import InvoiceKind
from billing.services import revenue_metrics
from billing.services.credit_notes import credit_note_create
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from subscriptions import clock
from subscriptions.models import ProvisioningRun, RunOutcome
from tests.clock import month_start

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
