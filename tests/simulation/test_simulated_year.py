"""The simulated year (portal/simulation): a bounded run through the real services must pass every invariant, and
the invariants must catch the defects they exist for (planted afterwards, one at a time).

Size: CONTINUUM_SIMULATION_CUSTOMERS × CONTINUUM_SIMULATION_MONTHS (default 100 × 3, what CI runs). The run starts on
its own pinned date (2027-06-15, crossing month ends of 30 and 31 days), never on today's.
"""

import os
from datetime import date

import pytest
from django.core.management import call_command

from billing.models import BillingProfile, Invoice, InvoiceStatus, Payment
from portal.simulation import invariants
from portal.simulation.year import invoice_snapshot
from subscriptions.models import AuditEvent, SeatLedgerEntry

CUSTOMERS = int(os.environ.get("CONTINUUM_SIMULATION_CUSTOMERS", "100"))
MONTHS = int(os.environ.get("CONTINUUM_SIMULATION_MONTHS", "3"))


@pytest.fixture
def simulated(tmp_path):
    from portal.management.commands.simulate_year import Command

    command = Command()
    # A higher re-bill rate than the default so that the CI size exercises the clerk's void and re-bill.
    call_command(
        command, customers=CUSTOMERS, months=MONTHS, start=date(2027, 6, 15), seed=7, out=tmp_path, rebill_rate=0.02
    )
    return command, tmp_path


def _kinds(violations) -> set[str]:
    return {v.invariant for v in violations}


@pytest.mark.django_db(transaction=True)
def test_simulate_year_passes_every_invariant_and_the_invariants_catch_planted_defects(simulated):
    command, out = simulated
    figures = command.figures
    # given a realistic base: every customer signed up and things happened to them
    assert figures["events"]["signup"] == CUSTOMERS
    for kind in ("seats_up", "seats_down", "payment"):
        assert figures["events"].get(kind, 0) > 0, kind
    assert figures["issued"] >= CUSTOMERS  # at least each customer's first invoice
    # card customers paid through localstripe, some cards were declined, and Stripe's webhooks came twice
    cards = figures["cards"]
    assert 0 < cards["customers"] <= 20
    assert cards.get("card payment succeeded", 0) > 0
    assert cards.get("card payment failed", 0) > 0
    assert cards.get("webhook duplicates ignored", 0) > 0
    # and the clerk voided and re-billed what customers reported wrong
    assert figures["reviews"].get("voided and re-billed", 0) > 0
    # then every invariant holds, and bills were right first time (corrections only for outside causes)
    assert figures["violations"] == []
    assert figures["right_first_time_inside"] >= 0.995
    assert "holds by reason" in (out / "simulated-year.txt").read_text()
    assert "<svg" in (out / "simulated-year.html").read_text()
    issued = Invoice.objects.filter(status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID)).prefetch_related("lines")
    snapshots = {invoice.pk: invoice_snapshot(invoice) for invoice in issued}
    assert invariants.check_all(issued_snapshots=snapshots) == []

    # when an issued invoice is edited behind the services' back, then the tax sums and immutability both fail
    invoice = Invoice.objects.filter(status=InvoiceStatus.PAID, total_minor__gt=0).order_by("id").first()
    Invoice.objects.filter(pk=invoice.pk).update(total_minor=invoice.total_minor + 1)
    assert {"tax", "numbering", "money"} <= _kinds(invariants.check_all(issued_snapshots=snapshots))
    Invoice.objects.filter(pk=invoice.pk).update(total_minor=invoice.total_minor)

    # when a seat change is missing from the ledger, then the seats invariant fails
    entry = SeatLedgerEntry.objects.order_by("-id").first()
    entry_values = {"seats_from": entry.seats_from, "seats_to": entry.seats_to}
    SeatLedgerEntry.objects.filter(pk=entry.pk).update(seats_to=entry.seats_to + 5)
    assert "seats" in _kinds(invariants.check_all(issued_snapshots=snapshots))
    SeatLedgerEntry.objects.filter(pk=entry.pk).update(**entry_values)

    # when a customer that requires a PO has invoices without one, then the holds invariant fails
    no_po = Invoice.objects.filter(status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID), po_number="").first()
    BillingProfile.objects.filter(customer_id=no_po.customer_id).update(requires_po=True)
    assert "holds" in _kinds(invariants.check_all(issued_snapshots=snapshots))
    BillingProfile.objects.filter(customer_id=no_po.customer_id).update(requires_po=False)

    # when a re-billed invoice's replacement is voided behind the services' back, then the periods invariant fails
    rebilled = AuditEvent.objects.filter(action="invoice.rebilled").first()
    replacement = Invoice.objects.get(pk=rebilled.after["invoice_id"])
    Invoice.objects.filter(pk=replacement.pk).update(status=InvoiceStatus.VOID)
    assert "periods" in _kinds(invariants.check_all(issued_snapshots=snapshots))
    Invoice.objects.filter(pk=replacement.pk).update(status=replacement.status)

    # when an invoice paid by card is recorded as paid twice, then the money invariant fails
    card = Payment.objects.filter(kind="card", status="succeeded").first()
    Invoice.objects.filter(pk=card.invoice_id).update(amount_paid_minor=2 * card.amount_minor)
    assert "money" in _kinds(invariants.check_all(issued_snapshots={}))

    # when a number goes missing from a series, then the numbering invariant fails
    last = Invoice.objects.exclude(number__isnull=True).order_by("-number").first()
    Invoice.objects.filter(pk=last.pk).update(number=last.number[:-4] + "9999")
    assert "numbering" in _kinds(invariants.check_all(issued_snapshots={}))
