"""The simulated year (portal/simulation): a bounded run through the real services must pass every invariant, and
the invariants must catch the defects they exist for (planted afterwards, one at a time).

Size: CONTINUUM_SIMULATION_CUSTOMERS × CONTINUUM_SIMULATION_MONTHS (default 100 × 3, what CI runs). The run starts on
15 June of the year after the (pinned) now — the command's default, crossing month ends of 30 and 31 days — and pins
its own clock from there, so it never reads today's date.
"""

import os
from datetime import timedelta

import pytest
from django.core.management import call_command

from billing.models import (
    BillingProfile,
    CustomerHealthSnapshot,
    Discount,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    Payment,
    RevenueMonth,
)
from portal.management.commands.simulate_year import default_start
from portal.simulation import invariants
from portal.simulation.webhook_receiver import WebhookReceivers
from portal.simulation.year import invoice_snapshot
from subscriptions.models import AuditEvent, SeatLedgerEntry
from tests.clock import today

CUSTOMERS = int(os.environ.get("CONTINUUM_SIMULATION_CUSTOMERS", "100"))
MONTHS = int(os.environ.get("CONTINUUM_SIMULATION_MONTHS", "3"))


@pytest.fixture
def simulated(tmp_path):
    from portal.management.commands.simulate_year import Command

    command = Command()
    # A higher re-bill rate than the default so that the CI size exercises the clerk's void and re-bill.
    call_command(
        command,
        customers=CUSTOMERS,
        months=MONTHS,
        start=default_start(today()),
        seed=7,
        out=tmp_path,
        rebill_rate=0.02,
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
    # every sign-up's enablement was timed (runs that applied a change, queued → finished)
    assert len(figures["enablement_seconds"]) >= CUSTOMERS and min(figures["enablement_seconds"]) >= 0
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
    _issues_20_to_23_hold_and_catch_their_defects(command, out)

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


def _issues_20_to_23_hold_and_catch_their_defects(command, out) -> None:
    """Issues 20–23 in the simulated year: their events happen, their invariants hold, and each catches its defect
    (part of the one test above: one simulated year per CI run)."""
    figures, simulation = command.figures, command.simulation
    assert figures["violations"] == []
    # given e-invoiced EU businesses, redeemed and refused promotion codes, integrators' endpoints and nightly scores
    assert figures["e_invoices"] > 0
    assert sum(figures["promotion_codes_redeemed"].values()) > 0
    assert any("promotion_code_expired" in k for k in figures["promotion_codes_refused"])
    assert figures["webhook_endpoints"] > 0 and figures["webhook_events_received"] > 0
    assert sum(figures["health_stages"].values()) == CUSTOMERS
    text = (out / "simulated-year.txt").read_text()
    assert "journey stages:" in text and "at risk (lowest scores first):" in text and "webhooks:" in text
    assert "Health score distribution" in (out / "simulated-year.html").read_text()
    # and the revenue metrics of every complete month, from the aggregates the staff metrics page reads
    [usd] = [r for r in figures["revenue"] if r["currency"] == "USD"]
    assert len(usd["mrr_by_month"]) == MONTHS  # every month whose end the run reached (it starts on the 15th)
    assert usd["mrr_minor"] > 0 and usd["arr_minor"] == 12 * usd["mrr_minor"] and usd["customers"] > 0
    assert "revenue metrics (USD" in text and "MRR by month (USD" in (out / "simulated-year.html").read_text()
    snapshots = {}

    # when an issued e-invoice's frozen seller details lose the VAT ID, then it fails the rules, named with the rule
    e_invoice = Invoice.objects.filter(e_invoice=True, status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID)).first()
    seller = e_invoice.seller_details
    Invoice.objects.filter(pk=e_invoice.pk).update(seller_details={**seller, "vat_id": ""})
    einvoice_violations = [v for v in invariants.check_all(issued_snapshots=snapshots) if v.invariant == "e-invoices"]
    Invoice.objects.filter(pk=e_invoice.pk).update(seller_details=seller)
    assert einvoice_violations and "BR-" in einvoice_violations[0].facts
    assert einvoice_violations[0].subject.startswith(f"invoice {e_invoice.number}")

    # when a discount is made to have expired before the periods it was applied to, then the invariant fails
    discounted = Invoice.objects.filter(
        lines__kind=LineKind.DISCOUNT, status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID)
    )
    line = discounted.first().lines.filter(kind=LineKind.DISCOUNT).first()
    discount = Discount.objects.get(pk=line.discount_id)
    Discount.objects.filter(pk=discount.pk).update(ends_at=discount.starts_at)
    assert "discounts" in _kinds(invariants.check_all(issued_snapshots=snapshots))
    Discount.objects.filter(pk=discount.pk).update(ends_at=discount.ends_at)

    # when a change's discount is made to start after the change it discounted, then the invariant fails (the one
    # coverage rule: a change's lines are discounted only by a discount active at the change instant)
    change_line = InvoiceLine.objects.filter(
        kind=LineKind.DISCOUNT,
        subscription_change__isnull=False,
        invoice__status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID),
    ).first()
    discount = Discount.objects.get(pk=change_line.discount_id)
    later = change_line.subscription_change.effective_at + timedelta(minutes=1)
    Discount.objects.filter(pk=discount.pk).update(starts_at=later)
    assert "discounts" in _kinds(invariants.check_all(issued_snapshots=snapshots))
    Discount.objects.filter(pk=discount.pk).update(starts_at=discount.starts_at)

    # when the receiver had missed an event, then the webhook invariant names it
    receivers = next(e for e in simulation.extensions if isinstance(e, WebhookReceivers))
    ids = [r.event_id for r in receivers.receipts]
    index = next(i for i, r in enumerate(receivers.receipts) if r.status == 200 and ids.count(r.event_id) == 1)
    dropped = receivers.receipts.pop(index)
    assert any(dropped.event_id in v.facts for v in receivers.violations(simulation))
    receivers.receipts.insert(index, dropped)
    assert receivers.violations(simulation) == []

    # when a customer's score says nothing of the overdue invoice it has, then the health invariant fails
    health = next(e for e in simulation.extensions if type(e).__name__ == "CustomerHealth")
    snapshot = CustomerHealthSnapshot.objects.order_by("-computed_at", "-id").first()
    CustomerHealthSnapshot.objects.filter(pk=snapshot.pk).update(stage="established", score=250)
    assert any(v.invariant == "health" for v in health.violations(simulation))

    # when a stored month's MRR no longer follows from its movements and the facts, then the revenue invariant fails
    stored = RevenueMonth.objects.filter(currency="USD").order_by("month").first()
    RevenueMonth.objects.filter(pk=stored.pk).update(mrr_minor=stored.mrr_minor + 1)
    found = [v for v in health.revenue_violations() if v.subject == f"revenue USD {stored.month:%Y-%m}"]
    assert {v.facts.split(" ≠ ")[0].split(" ")[0] for v in found} == {"MRR", "stored"}
