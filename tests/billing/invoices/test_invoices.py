from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from billing.exceptions import (
    CurrencyMismatch,
    InvalidTransition,
    InvoiceImmutable,
    InvoiceNotIssuable,
    PaymentInvalid,
    ReasonCodeInvalid,
)
from billing.models import INVOICE_TRANSITIONS, HoldReason, Invoice, InvoiceLine, InvoiceStatus, InvoiceStatusChange
from billing.services.billing_run import draft_chunk
from billing.services.invoices import (
    DraftLine,
    invoice_apply_payment,
    invoice_approve_and_issue,
    invoice_draft_create,
    invoice_finalize,
    invoice_issue,
    invoice_line_add,
    invoice_line_update,
    invoice_mark_uncollectible,
    invoice_recompute,
    invoice_set_po_number,
    invoice_void,
)
from billing.services.profiles import billing_profile_update
from subscriptions.models import Entitlement, EntitlementKind, EntitlementState, SeatLedgerEntry, SubscriptionChange
from tests.billing.conftest import established
from tests.factories import BillingProfileFactory, CustomerFactory, SubscriptionFactory, utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]


def _codes(invoice):
    return [reason["code"] for reason in invoice.hold_reasons]


def _draft(subscription):
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    return Invoice.objects.get(pk=invoice_id)


def _open_invoice(customer, staff, amount=10_000):
    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Consulting", unit_amount_minor=amount)]
    )
    return invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)


def test_invoice_transitions_table_forbids_going_back():
    assert InvoiceStatus.OPEN not in INVOICE_TRANSITIONS[InvoiceStatus.PAID]
    assert INVOICE_TRANSITIONS[InvoiceStatus.VOID] == frozenset()
    assert InvoiceStatus.DRAFT not in INVOICE_TRANSITIONS[InvoiceStatus.OPEN]


def test_invoice_finalize_issues_clean_draft_with_number_and_due_date(customer, subscription, ca_tax, staff):
    established(customer, staff)
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.number.startswith(f"INV-{invoice.issued_at.year}-")
    assert invoice.due_on == (invoice.issued_at + timedelta(days=30)).date()
    assert invoice.amount_due_minor == invoice.total_minor == 16_088
    assert invoice.billing_legal_name == "Acme Incorporated"
    assert invoice.billing_address[0] == "1 Infinite Loop"
    assert invoice.seller_details["name"]
    assert list(invoice.status_changes.values_list("to_status", flat=True)) == ["draft", "open"]


def test_invoice_numbers_are_sequential_without_gaps(customer, staff):
    numbers = [_open_invoice(customer, staff).number for _ in range(3)]
    year = numbers[0].split("-")[1]
    assert numbers == [f"INV-{year}-{n:06d}" for n in (1, 2, 3)]


def test_invoice_number_not_consumed_when_issue_is_refused(customer, staff):
    first = _open_invoice(customer, staff)
    bad = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Credit", unit_amount_minor=-500)]
    )
    with pytest.raises(InvoiceNotIssuable):
        invoice_approve_and_issue(invoice_id=bad.pk, actor=staff)
    second = _open_invoice(customer, staff)
    assert int(second.number[-6:]) == int(first.number[-6:]) + 1


def test_recompute_that_meets_an_invoice_issued_meanwhile_leaves_it_untouched(customer, staff):
    # A recheck lists the customer's draft/held invoices, then recomputes them one by one; another process (the
    # billing run, staff approving) may issue one in between. The recompute must leave the issued invoice alone
    # rather than fail the whole recheck (seen under load: InvoiceImmutable from an approval's on-commit recheck).
    invoice = _open_invoice(customer, staff)
    before = Invoice.objects.get(pk=invoice.pk)
    after = invoice_recompute(invoice_id=invoice.pk)
    assert after.status == InvoiceStatus.OPEN
    fresh = Invoice.objects.get(pk=invoice.pk)
    assert (fresh.number, fresh.total_minor, fresh.version) == (before.number, before.total_minor, before.version)


def test_issued_invoice_lines_and_amounts_are_immutable(customer, staff):
    invoice = _open_invoice(customer, staff)
    line = invoice.lines.get()
    with pytest.raises(InvoiceImmutable):
        invoice_line_update(line_id=line.pk, amount_minor=1)
    with pytest.raises(InvoiceImmutable):
        invoice_line_add(invoice_id=invoice.pk, line=DraftLine(description="Extra", unit_amount_minor=1))
    # even bypassing the services
    line.amount_minor = 1
    with pytest.raises(InvoiceImmutable):
        line.save()
    with pytest.raises(InvoiceImmutable):
        line.delete()
    fresh = Invoice.objects.get(pk=invoice.pk)
    fresh.total_minor = 1
    with pytest.raises(InvoiceImmutable):
        fresh.save()
    with pytest.raises(InvoiceImmutable):
        invoice.tax_lines.model(invoice=invoice, name="x", rate=1, taxable_amount_minor=1, tax_amount_minor=1).save()
    assert Invoice.objects.get(pk=invoice.pk).total_minor == 10_000


def test_invoice_draft_edit_recomputes_tax_and_bumps_version(customer, ca_tax, staff):
    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Seats", unit_amount_minor=10_000)]
    )
    invoice_line_add(invoice_id=invoice.pk, line=DraftLine(description="More", unit_amount_minor=10_000), actor=staff)
    invoice.refresh_from_db()
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.version) == (20_000, 1450, 2)


def test_invoice_first_of_new_customer_is_held(subscription, ca_tax):
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert invoice.status == InvoiceStatus.HELD
    assert _codes(invoice) == [HoldReason.FIRST_INVOICE]
    assert invoice.number is None


def test_invoice_held_when_po_required_and_missing_then_released_by_po(customer, subscription, staff):
    established(customer, staff)
    billing_profile_update(customer=customer, requires_po=True)
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert _codes(invoice) == [HoldReason.PO_MISSING]
    invoice = invoice_set_po_number(invoice_id=invoice.pk, po_number="PO-778")
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.po_number == "PO-778"


def test_invoice_standing_po_is_copied(customer, subscription, staff):
    established(customer, staff)
    billing_profile_update(customer=customer, requires_po=True, standing_po_number="PO-STANDING")
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.po_number == "PO-STANDING"


def test_invoice_held_when_billed_seats_differ_from_provisioned(customer, subscription, staff):
    established(customer, staff)
    SeatLedgerEntry.objects.create(
        subscription=subscription, seats_from=0, seats_to=8, reason="subscribed", effective_at=utc(2026, 10, 1)
    )
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert _codes(invoice) == [HoldReason.SEATS_MISMATCH]
    assert "bills 10 seats but 8 are provisioned" in invoice.hold_reasons[0]["message"]


def _running_now(customer, *, seats_applied: int | None, state=EntitlementState.ACTIVE, shared_with=()):
    """A 10-seat subscription whose period runs now, and its seat entitlement as provisioning left it."""
    subscription = SubscriptionFactory(customer=customer, current_period_start=timezone.now() - timedelta(days=3))
    SeatLedgerEntry.objects.create(
        subscription=subscription,
        seats_from=0,
        seats_to=10,
        reason="subscribed",
        effective_at=subscription.current_period_start,
    )
    Entitlement.objects.create(
        customer=customer,
        feature_key="seats",
        value_kind=EntitlementKind.SEATS,
        desired_value=10,
        applied_value=seats_applied,
        state=state,
        granted_by=[f"subscription:{subscription.pk}", *shared_with],
    )
    return subscription


def test_invoice_held_when_provisioning_never_switched_the_billed_seats_on(customer, staff):
    # given: the period running now bills 10 seats, but the provisioner failed after applying 8
    established(customer, staff)
    subscription = _running_now(customer, seats_applied=8, state=EntitlementState.FAILED)

    # when
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)

    # then: held for billing staff, not sent
    assert invoice.status == InvoiceStatus.HELD
    assert _codes(invoice) == [HoldReason.SEATS_MISMATCH]
    assert "bills 10 seats but 8 are provisioned" in invoice.hold_reasons[0]["message"]


def test_invoice_issued_when_provisioned_seats_match_and_held_when_nothing_was_applied(customer, staff):
    established(customer, staff)
    matching = _running_now(customer, seats_applied=10)
    assert invoice_finalize(invoice_id=_draft(matching).pk).status == InvoiceStatus.OPEN

    other = CustomerFactory()
    BillingProfileFactory(customer=other)
    established(other, staff)
    never_applied = _running_now(other, seats_applied=None, state=EntitlementState.PENDING)
    invoice = invoice_finalize(invoice_id=_draft(never_applied).pk)
    assert _codes(invoice) == [HoldReason.SEATS_MISMATCH]
    assert "bills 10 seats but 0 are provisioned" in invoice.hold_reasons[0]["message"]


def test_seats_added_after_the_period_start_do_not_hold_the_period_invoice(customer, staff):
    # given: the period started with 10 seats (billed), 2 were added since (billed by their own proration) and
    # provisioning applied all 12
    established(customer, staff)
    subscription = _running_now(customer, seats_applied=12)
    SeatLedgerEntry.objects.create(
        subscription=subscription, seats_from=10, seats_to=12, reason="seat change", effective_at=timezone.now()
    )
    draft = _draft(subscription)
    subscription.seats = 12
    subscription.save(update_fields=["seats"])

    # when / then: the period invoice for 10 seats goes out
    invoice = invoice_finalize(invoice_id=draft.pk)
    assert (invoice.billed_seats, invoice.status) == (10, InvoiceStatus.OPEN)


def test_seat_entitlement_shared_by_two_subscriptions_falls_back_to_the_seat_ledger(customer, staff):
    # One entitlement adds up two subscriptions' seats: this subscription's share is not knowable from it.
    established(customer, staff)
    subscription = _running_now(customer, seats_applied=25, shared_with=["subscription:999999"])
    assert invoice_finalize(invoice_id=_draft(subscription).pk).status == InvoiceStatus.OPEN


def test_invoice_held_when_address_incomplete_and_cannot_be_approved(customer, subscription, staff):
    established(customer, staff)
    billing_profile_update(customer=customer, city="", postal_code="")
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert _codes(invoice) == [HoldReason.TAX_LOCATION_MISSING]
    assert invoice.hold_reasons[0]["message"] == "The billing address is incomplete: add the city, the postal code."
    with pytest.raises(InvoiceNotIssuable, match="add the city"):
        invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)


def test_invoice_held_when_us_region_missing(customer, subscription, staff):
    established(customer, staff)
    billing_profile_update(customer=customer, region="")
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert "state/province" in invoice.hold_reasons[0]["message"]


def test_invoice_held_when_negative_total(customer, staff):
    established(customer, staff)
    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Credit", unit_amount_minor=-500)]
    )
    invoice = invoice_finalize(invoice_id=invoice.pk)
    assert _codes(invoice) == [HoldReason.NEGATIVE_TOTAL]


def test_invoice_held_when_currency_differs_from_customer(customer, staff):
    established(customer, staff)
    invoice = invoice_draft_create(
        customer=customer, currency="EUR", lines=[DraftLine(description="Seats", unit_amount_minor=500)]
    )
    invoice = invoice_finalize(invoice_id=invoice.pk)
    assert _codes(invoice) == [HoldReason.CURRENCY_MISMATCH]
    # a soft hold: staff may approve it
    assert invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff).status == InvoiceStatus.OPEN


def test_invoice_held_when_total_jumps_without_recorded_change(customer, subscription, staff):
    established(customer, staff)
    first = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert first.status == InvoiceStatus.OPEN
    # the period rolls over and seats silently go from 10 to 20 (no SubscriptionChange recorded)
    subscription.current_period_start, subscription.current_period_end = utc(2026, 12, 1), utc(2027, 1, 1)
    subscription.seats = 20
    subscription.save()
    second = invoice_finalize(invoice_id=_draft(subscription).pk)
    assert _codes(second) == [HoldReason.AMOUNT_CHANGED]
    assert "by 67%" in second.hold_reasons[0]["message"]


def test_invoice_total_jump_explained_by_recorded_change_is_issued(customer, subscription, staff):
    established(customer, staff)
    invoice_finalize(invoice_id=_draft(subscription).pk)
    SubscriptionChange.objects.create(
        subscription=subscription, kind="seats", currency="USD", effective_at=utc(2026, 11, 20)
    )
    subscription.current_period_start, subscription.current_period_end = utc(2026, 12, 1), utc(2027, 1, 1)
    subscription.seats = 20
    subscription.save()
    assert invoice_finalize(invoice_id=_draft(subscription).pk).status == InvoiceStatus.OPEN


def test_invoice_approve_and_issue_records_approver(customer, subscription, staff):
    invoice = invoice_finalize(invoice_id=_draft(subscription).pk)
    invoice = invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff, note="Checked with sales")
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.approved_by == staff
    change = InvoiceStatusChange.objects.filter(invoice=invoice, to_status="open").get()
    assert "first_invoice" in change.reason and change.actor == staff


def test_invoice_issue_twice_is_refused(customer, staff):
    invoice = _open_invoice(customer, staff)
    with pytest.raises(InvalidTransition):
        invoice_issue(invoice_id=invoice.pk)


def test_invoice_void_requires_known_reason_code(customer, staff):
    invoice = _open_invoice(customer, staff)
    with pytest.raises(ReasonCodeInvalid):
        invoice_void(invoice_id=invoice.pk, reason_code="oops")
    invoice = invoice_void(invoice_id=invoice.pk, reason_code="duplicate", reason="Sent twice", actor=staff)
    assert (invoice.status, invoice.void_reason_code, invoice.amount_due_minor) == ("void", "duplicate", 0)
    with pytest.raises(InvalidTransition):
        invoice_apply_payment(invoice_id=invoice.pk, amount_minor=100)


def test_invoice_void_refused_once_paid(customer, staff):
    invoice = _open_invoice(customer, staff)
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=10_000)
    with pytest.raises(InvalidTransition):
        invoice_void(invoice_id=invoice.pk, reason_code="duplicate")


def test_invoice_apply_payment_partial_then_full(customer, staff):
    invoice = _open_invoice(customer, staff)
    invoice = invoice_apply_payment(invoice_id=invoice.pk, amount_minor=4_000, currency="usd", reference="wire 1")
    assert (invoice.status, invoice.amount_paid_minor, invoice.amount_due_minor) == ("open", 4_000, 6_000)
    invoice = invoice_apply_payment(invoice_id=invoice.pk, amount_minor=6_000)
    assert (invoice.status, invoice.amount_due_minor) == ("paid", 0)
    assert invoice.paid_at is not None


@pytest.mark.parametrize("amount", [0, -5, 10_001, "100", 1.5, True])
def test_invoice_apply_payment_rejects_bad_amounts(customer, staff, amount):
    invoice = _open_invoice(customer, staff)
    with pytest.raises(PaymentInvalid):
        invoice_apply_payment(invoice_id=invoice.pk, amount_minor=amount)
    assert Invoice.objects.get(pk=invoice.pk).amount_paid_minor == 0


def test_invoice_apply_payment_rejects_other_currency(customer, staff):
    invoice = _open_invoice(customer, staff)
    with pytest.raises(CurrencyMismatch):
        invoice_apply_payment(invoice_id=invoice.pk, amount_minor=100, currency="EUR")


def test_invoice_apply_payment_refused_on_draft(customer):
    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="x", unit_amount_minor=100)]
    )
    with pytest.raises(InvalidTransition):
        invoice_apply_payment(invoice_id=invoice.pk, amount_minor=100)


def test_invoice_uncollectible_can_still_be_paid(customer, staff):
    invoice = _open_invoice(customer, staff)
    invoice = invoice_mark_uncollectible(invoice_id=invoice.pk, reason="dunning exhausted")
    assert invoice.status == InvoiceStatus.UNCOLLECTIBLE
    with pytest.raises(InvalidTransition):
        invoice_void(invoice_id=invoice.pk, reason_code="other")
    assert invoice_apply_payment(invoice_id=invoice.pk, amount_minor=10_000).status == InvoiceStatus.PAID


def test_invoice_zero_total_is_paid_at_issue(customer, staff):
    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Free month", unit_amount_minor=0)]
    )
    invoice = invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)
    assert invoice.status == InvoiceStatus.PAID


def test_invoice_number_only_when_issued_is_a_database_constraint(customer):
    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="x", unit_amount_minor=100)]
    )
    with pytest.raises(IntegrityError):
        Invoice.objects.filter(pk=invoice.pk).update(number="INV-FAKE-1")


def test_invoice_lines_keep_customer_words_and_sku_small_print(subscription):
    invoice = _draft(subscription)
    lines = list(InvoiceLine.objects.filter(invoice=invoice).order_by("position"))
    assert lines[0].description.startswith("Team plan (includes 5 seats)")
    assert lines[0].sku_code == "PLAT-BASE-M"
    assert lines[1].description.startswith("Team — 5 additional seats")
    assert (lines[1].quantity, lines[1].unit_amount_minor, lines[1].amount_minor) == (5, 1_000, 5_000)


def test_invoice_draft_other_customer_subscription_unaffected(customer, subscription):
    other = SubscriptionFactory()
    invoice = _draft(subscription)
    assert invoice.customer == customer
    assert not other.invoices.exists()


def test_invoice_apply_payment_happened_when_paid_in_the_customers_money_format(customer, staff):
    from subscriptions.models import AuditEvent

    # given an open invoice, and a bank transfer made three weeks ago that staff enter today
    invoice = _open_invoice(customer, staff)
    paid_at = utc(2026, 10, 13, 9, 30)
    # when it is recorded with the day it was paid
    invoice = invoice_apply_payment(invoice_id=invoice.pk, amount_minor=10_000, paid_at=paid_at, actor=staff)
    # then the payment and the invoice being paid happened that day, and the amount reads as the customer writes it
    payment = AuditEvent.objects.get(action="invoice.payment_recorded", object_id=str(invoice.pk))
    paid = AuditEvent.objects.get(action="invoice.paid", object_id=str(invoice.pk))
    assert payment.summary == f"Payment of $100.00 on {invoice.number}"
    assert payment.after == {"amount_minor": 10_000, "currency": "USD", "reference": ""}
    assert payment.occurred_at == paid.occurred_at == invoice.paid_at == paid_at
    assert payment.created_at > paid_at and payment.recorded_later


def test_invoice_apply_payment_for_a_german_customer_reads_in_german_format(staff):
    from subscriptions.models import AuditEvent
    from tests.factories import BillingProfileFactory, CustomerFactory

    customer = CustomerFactory(name="Initech", country="DE", currency="EUR")
    BillingProfileFactory(customer=customer, country="DE", region="", billing_emails=["ap@initech.test"])
    established(customer, staff)
    invoice = Invoice.objects.filter(customer=customer).get()
    invoice_apply_payment(invoice_id=invoice.pk, amount_minor=invoice.amount_due_minor)
    payment = AuditEvent.objects.get(action="invoice.payment_recorded", object_id=str(invoice.pk))
    assert payment.summary == f"Payment of 1,00\u00a0€ on {invoice.number}"
    assert not payment.recorded_later
