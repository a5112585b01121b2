import pytest

from billing.models import Invoice, InvoiceKind, InvoiceStatus, PendingInvoiceItem
from billing.services.billing_run import billing_run
from billing.services.changes import UnknownChangeKind, change_apply, change_preview, changes_bill_unbilled
from billing.services.profiles import billing_profile_update
from subscriptions.services.changes import subscription_change_seats_apply
from tests.billing.conftest import established
from tests.factories import BillingProfileFactory, CustomerFactory, SubscriptionFactory, utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]
AT = utc(2026, 11, 16)  # 15 of 30 days left in [1 Nov, 1 Dec): factor 0.5


def test_change_preview_adds_tax_and_says_invoice_now(customer, subscription, ca_tax):
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT)
    assert billed.preview.amount_due_now_minor == 2_000  # 4 seats × 10.00 × 15/30
    assert (billed.subtotal_minor, billed.tax_minor, billed.total_minor) == (2_000, 145, 2_145)
    assert billed.billing_mode == "invoice_now"
    assert billed.billing_message == "We will invoice $21.45 now."
    assert billed.next_recurring_subtotal_minor == 19_000


def test_change_preview_says_next_invoice_for_net_terms_customers(customer, subscription):
    billing_profile_update(customer=customer, change_billing_mode="next_invoice")
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT)
    assert billed.billing_mode == "next_invoice"
    assert billed.billing_message == "$20.00 will be added to your next invoice on Dec 1, 2026."


def test_change_preview_text_writes_amount_and_date_as_the_customer_s_country_does(db):
    # given a customer in Germany billed in euros, on net terms (changes go on the next invoice)
    german = CustomerFactory(name="Kunde", country="DE", currency="EUR")
    BillingProfileFactory(customer=german, billing_emails=["ap@kunde.test"])
    billing_profile_update(customer=german, change_billing_mode="next_invoice")
    subscription = SubscriptionFactory(customer=german)
    # when adding 4 seats is previewed on 16 Nov
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT)
    # then the explanation reads as written in Germany: "20,00 €" and "1 Dec 2026" (a US customer: "Dec 1, 2026")
    assert billed.billing_message == "20,00\u00a0€ will be added to your next invoice on 1 Dec 2026."


def test_change_preview_nothing_now_for_scheduled_decrease(customer, subscription):
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=8, at=AT)
    assert (billed.billing_mode, billed.total_minor) == ("none", 0)


def test_change_preview_unknown_kind(subscription):
    with pytest.raises(UnknownChangeKind):
        change_preview(subscription_id=subscription.pk, kind="teleport")


def test_change_apply_invoice_now_bills_exactly_the_preview(customer, subscription, ca_tax, staff, owner):
    established(customer, staff)
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT)
    result = change_apply(
        subscription_id=subscription.pk,
        kind="seats",
        seats=14,
        expected_version=billed.version,
        idempotency_key="k1",
        actor=owner,
        at=AT,
    )
    invoice = result.invoice
    assert invoice.kind == InvoiceKind.PRORATION and invoice.status == InvoiceStatus.OPEN
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (2_000, 145, 2_145)
    [line] = invoice.lines.all()
    assert line.is_proration and line.description == billed.preview.lines[0].description
    again = change_apply(
        subscription_id=subscription.pk,
        kind="seats",
        seats=14,
        expected_version=billed.version,
        idempotency_key="k1",
        actor=owner,
        at=AT,
    )
    assert again.invoice.pk == invoice.pk
    assert Invoice.objects.filter(kind=InvoiceKind.PRORATION).count() == 1


def test_change_apply_next_invoice_creates_pending_items_collected_at_renewal(customer, subscription, staff, owner):
    established(customer, staff)
    billing_profile_update(customer=customer, change_billing_mode="next_invoice")
    billing_run(as_of=utc(2026, 11, 2))  # November is already invoiced
    subscription.refresh_from_db()
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT)
    result = change_apply(
        subscription_id=subscription.pk, kind="seats", seats=14, expected_version=billed.version, actor=owner, at=AT
    )
    assert result.invoice is None
    [item] = result.pending_items
    assert (item.amount_minor, item.invoice) == (2_000, None)
    assert not Invoice.objects.filter(kind=InvoiceKind.PRORATION).exists()
    billing_run(as_of=utc(2026, 12, 1, 1))
    december = Invoice.objects.get(subscription=subscription, period_start=utc(2026, 12, 1))
    item.refresh_from_db()
    assert item.invoice == december
    assert december.subtotal_minor == 19_000 + 2_000


def test_changes_bill_unbilled_is_the_safety_net_and_never_bills_twice(customer, subscription, owner):
    change = subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=12, expected_version=subscription.version, actor=owner, at=AT
    )
    assert changes_bill_unbilled() == 1
    assert changes_bill_unbilled() == 0
    invoice = Invoice.objects.get(subscription_change=change)
    assert invoice.subtotal_minor == 1_000
    assert PendingInvoiceItem.objects.count() == 0


def test_a_change_whose_billing_was_lost_is_billed_by_the_next_run_and_settled_changes_are_not_read_again(
    customer, subscription, owner, django_assert_num_queries
):
    from subscriptions.models import SubscriptionChange

    # billed by the wrapper: settled in the same transaction
    billed = change_apply(
        subscription_id=subscription.pk,
        kind="seats",
        seats=12,
        expected_version=subscription.version,
        actor=owner,
        at=AT,
    )
    assert billed.change.billing_settled_at is not None
    subscription.refresh_from_db()
    # applied without billing (its billing lost): the next billing run bills it, once
    lost = subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=14, expected_version=subscription.version, actor=owner, at=AT
    )
    assert SubscriptionChange.objects.get(pk=lost.pk).billing_settled_at is None
    billing_run(as_of=AT)
    invoice = Invoice.objects.get(subscription_change=lost)
    assert invoice.subtotal_minor == 1_000  # 2 seats × 10.00 × 15/30
    assert SubscriptionChange.objects.get(pk=lost.pk).billing_settled_at is not None
    billing_run(as_of=AT)
    assert Invoice.objects.filter(subscription_change=lost).count() == 1
    # settled changes are not read again: the safety net is one query, however many changes were billed
    with django_assert_num_queries(1):
        assert changes_bill_unbilled() == 0


def test_the_safety_net_settles_a_change_billed_another_way_without_billing_it_again(customer, subscription, owner):
    from subscriptions.models import SubscriptionChange

    change = subscription_change_seats_apply(
        subscription_id=subscription.pk, seats=12, expected_version=subscription.version, actor=owner, at=AT
    )
    assert changes_bill_unbilled() == 1
    SubscriptionChange.objects.filter(pk=change.pk).update(billing_settled_at=None)  # e.g. billed before the marker
    assert changes_bill_unbilled() == 0
    assert SubscriptionChange.objects.get(pk=change.pk).billing_settled_at is not None
    assert Invoice.objects.filter(subscription_change=change).count() == 1


def test_change_preview_reads_the_subscription_and_billing_profile_once(customer, subscription, ca_tax):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.services.changes import subscriptions_for_billed_change

    # when previewing on its own (as the API does), then with the subscription already loaded (as the portal does)
    with CaptureQueriesContext(connection) as alone:
        billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT)
    loaded = subscriptions_for_billed_change().get(pk=subscription.pk)
    with CaptureQueriesContext(connection) as reused:
        again = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT, subscription=loaded)

    def reads(queries, table):
        return [q for q in queries.captured_queries if f'FROM "{table}"' in q["sql"]]

    # then the subscription is read once (with its billing profile), and not at all when handed over
    assert len(reads(alone, "subscriptions_subscription")) == 1
    assert reads(alone, "billing_billingprofile") == []
    assert reads(reused, "subscriptions_subscription") == [] and reads(reused, "billing_billingprofile") == []
    # the same numbers either way: tax from the profile's address, the profile's billing mode
    assert (
        (again.total_minor, again.billing_mode) == (billed.total_minor, billed.billing_mode) == (2_145, "invoice_now")
    )
    assert len(reused.captured_queries) <= 2  # the exemption and the tax rates


def test_change_apply_of_a_change_with_nothing_to_bill_looks_for_no_invoice(customer, subscription, owner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        result = change_apply(
            subscription_id=subscription.pk, kind="cancel", reason="Budget", expected_version=1, actor=owner, at=AT
        )
    assert result.billing_mode == "none" and result.invoice is None
    assert not [q for q in queries.captured_queries if 'FROM "billing_' in q["sql"]]


def test_a_billed_seat_change_reads_nothing_twice_in_its_transaction(customer, subscription, ca_tax, staff, owner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given an established Californian customer who previewed 4 more seats (invoice now)
    established(customer, staff)
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=14, at=AT)
    # when the change is applied (it is billed and its proration invoice issued in the same transaction)
    with CaptureQueriesContext(connection) as queries:
        result = change_apply(
            subscription_id=subscription.pk,
            kind="seats",
            seats=14,
            expected_version=billed.version,
            expected_amount_due_minor=billed.preview.amount_due_now_minor,
            idempotency_key="k1",
            actor=owner,
            at=AT,
        )
    sql = [q["sql"] for q in queries.captured_queries]

    def selects(table):
        return [s for s in sql if s.startswith(f'SELECT "{table}".')]  # rows of `table` (not a subquery)

    # then the invoice is the preview's, issued
    assert result.invoice.status == InvoiceStatus.OPEN and result.invoice.total_minor == billed.total_minor == 2_145
    # and the change just written is not read back, nor its invoice or pending items looked for before billing
    # the idempotency key's look-up, and the pre-issue checks' changes since the previous invoice
    assert len(selects("subscriptions_subscriptionchange")) == 2
    assert len(selects("billing_pendinginvoiceitem")) == 0
    assert len(selects("billing_discount")) == 1  # the change's discount, worked out once
    assert len(selects("billing_invoicenumbersequence")) == 1  # the locked series row, read once
    # the subscription: before the transaction (is its period over?), locked for the change; not again after it
    assert len(selects("subscriptions_subscription")) == 2
    assert len(sql) <= 50  # 60 before (issue 19, h19a)
