"""MRR ↔ invoice reconciliation (issue 20, `revenue_metrics.mrr_reconciliation`): each reason it gives, on a
subscription whose amounts are worked by hand, billed by the real billing run.

Team on tests/subscriptions/conftest.py's catalog: 100.00 a month + 10.00 per seat above 5; 10 seats = 150.00 a
month. The billing run of 1 Nov (clock pinned) issues November's invoice [1 Nov, 1 Dec); the reconciliation of
November compares the facts at the month's last instant with what the issued invoices covering it bill.
"""

import pytest
import time_machine

from billing.models import Invoice, InvoiceKind, InvoiceLine, LineKind
from billing.services import revenue_metrics
from billing.services.billing_run import billing_run
from billing.services.changes import change_apply, change_preview
from billing.services.credit_notes import credit_note_create
from billing.services.discounts import discount_redeem
from tests.billing.conftest import established
from tests.billing.discount_support import make_code, make_coupon
from tests.factories import SubscriptionFactory, utc
from tests.subscriptions.conftest import catalog  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db
NOW = utc(2026, 11, 1, 0, 5)
MID = utc(2026, 11, 16, 3, 7)
NOVEMBER = NOW.date()
SEAT = 1_000  # 10.00 a seat a month


@pytest.fixture
def team(customer, catalog, ca_tax, staff):  # noqa: F811
    with time_machine.travel(NOW, tick=False):
        established(customer, staff)
        subscription = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
    return subscription


def _bill_november():
    with time_machine.travel(NOW, tick=False):
        billing_run(as_of=NOW)
    return Invoice.objects.get(kind=InvoiceKind.REGULAR)


def _difference(customer):
    found = [d for d in revenue_metrics.mrr_reconciliation(NOVEMBER) if d.customer_id == customer.pk]
    return found[0] if found else None


def test_an_invoice_billing_the_facts_leaves_no_difference(customer, team):
    invoice = _bill_november()
    assert invoice.subtotal_minor == 15_000
    assert _difference(customer) is None


def test_a_credit_note_on_a_recurring_line_is_a_difference_of_what_it_credited(customer, team, staff):
    invoice = _bill_november()
    seats_line = invoice.lines.get(kind=LineKind.SEATS)
    with time_machine.travel(MID, tick=False):
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code="wrong_seat_count",
            lines=[{"invoice_line_id": seats_line.pk, "amount_minor": 2_000}],
            actor=staff,
        )
    d = _difference(customer)
    assert (d.fact_mrr_minor, d.invoiced_mrr_minor, d.difference_minor) == (15_000, 13_000, 2_000)
    assert d.reasons == ("credit_note",)


def test_a_mid_period_seat_increase_is_a_proration_difference(customer, team, owner):
    _bill_november()
    with time_machine.travel(MID, tick=False):
        preview = change_preview(subscription_id=team.pk, kind="seats", seats=14)
        change_apply(subscription_id=team.pk, kind="seats", expected_version=preview.version, actor=owner, seats=14)
    # the facts at November's end count 14 seats (190.00); November's invoice billed 10, the 4 more are on the
    # change's own (prorated) invoice, which the regular comparison leaves aside
    d = _difference(customer)
    assert (d.fact_mrr_minor, d.invoiced_mrr_minor, d.difference_minor) == (19_000, 15_000, 4 * SEAT)
    assert d.reasons == ("proration",)


def test_a_discount_on_the_invoice_is_a_discount_difference(customer, team):
    make_code(make_coupon(percent="20"))
    with time_machine.travel(NOW, tick=False):
        discount_redeem(customer=customer, subscription=team, promotion_code="LAUNCH20")
    invoice = _bill_november()
    # 20 % of 150.00 off, as the invoice's discount lines say; the facts are list prices
    discount = -sum(line.amount_minor for line in invoice.lines.filter(kind=LineKind.DISCOUNT))
    assert discount == 3_000
    d = _difference(customer)
    assert (d.fact_mrr_minor, d.invoiced_mrr_minor, d.difference_minor) == (15_000, 12_000, 3_000)
    assert d.reasons == ("discount",)


def test_a_trial_running_at_the_month_end_is_named_and_adds_nothing(customer, team, catalog, staff):  # noqa: F811
    # given the customer's paid Team, billed for November and then credited 20.00, and a second subscription still in
    # its trial at November's end (worth nothing in MRR until it converts, and not invoiced)
    invoice = _bill_november()
    with time_machine.travel(MID, tick=False):
        SubscriptionFactory(
            customer=customer, package=catalog.business, seats=12, status="trialing", trial_end=utc(2026, 12, 15)
        )
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code="wrong_seat_count",
            lines=[{"invoice_line_id": invoice.lines.get(kind=LineKind.SEATS).pk, "amount_minor": 2_000}],
            actor=staff,
        )
    # then the difference is the credit alone, and the trial is named beside it
    d = _difference(customer)
    assert (d.fact_mrr_minor, d.invoiced_mrr_minor, d.difference_minor) == (15_000, 13_000, 2_000)
    assert d.reasons == ("credit_note", "trial")


def test_a_difference_no_record_explains_is_unexplained(customer, team):
    invoice = _bill_november()
    # an issued line whose amount no longer matches the catalog and no change, credit or discount explains
    InvoiceLine.objects.filter(invoice=invoice, kind=LineKind.SEATS).update(amount_minor=4_000)
    d = _difference(customer)
    assert (d.fact_mrr_minor, d.invoiced_mrr_minor, d.difference_minor) == (15_000, 14_000, 1_000)
    assert d.reasons == ("unexplained",)


def test_an_issued_invoice_missing_for_the_moment_is_not_invoiced(customer, team):
    # no billing run yet: nothing issued covers November's end
    d = _difference(customer)
    assert (d.fact_mrr_minor, d.invoiced_mrr_minor, d.difference_minor) == (15_000, 0, 15_000)
    assert d.reasons == ("not_invoiced",)
