import pytest
from django.core.management import call_command

from billing.models import Invoice, InvoiceKind, InvoiceStatus, LineKind, PendingInvoiceItem
from billing.services.billing_run import billing_run
from billing.services.invoices import invoice_approve_and_issue
from subscriptions.models import Price, Subscription, SubscriptionStatus
from subscriptions.services.subscriptions import subscription_create
from tests.billing.conftest import established
from tests.factories import BillingProfileFactory, CustomerFactory, priced_package, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    package = priced_package(slug="team", trial_days=14)
    package.components.create(sku=_setup_sku(), quantity=1)
    Price.objects.filter(package=package).update(setup_amount_minor=50_000)
    return package


def _setup_sku():
    from tests.factories import SkuFactory

    return SkuFactory(code="ONB-SETUP", kind="one_time", tax_category="services")


def _subscribe(customer, package, **kwargs):
    return subscription_create(
        customer=customer, package=package, interval="month", seats=10, start=utc(2026, 8, 1), **kwargs
    )


def test_billing_run_drafts_first_invoice_with_setup_fee_and_catches_up_each_period(
    customer, team, ca_tax, staff, django_capture_on_commit_callbacks
):
    subscription = _subscribe(customer, team)
    result = billing_run(as_of=utc(2026, 11, 1, 0, 30))
    assert (result.renewed, result.drafted) == (1, 4)
    invoices = list(Invoice.objects.filter(subscription=subscription).order_by("period_start"))
    assert [i.period_start for i in invoices] == [utc(2026, m, 1) for m in (8, 9, 10, 11)]
    first, second = invoices[0], invoices[1]
    assert [line.kind for line in first.lines.order_by("position")] == [LineKind.FLAT, LineKind.SEATS, LineKind.SETUP]
    setup = first.lines.get(kind=LineKind.SETUP)
    assert (setup.amount_minor, setup.sku_code, setup.tax_category, setup.tax_rate) == (
        50_000,
        "ONB-SETUP",
        "services",
        0,
    )
    assert not second.lines.filter(kind=LineKind.SETUP).exists()
    assert second.subtotal_minor == 15_000
    # a new customer: every invoice is held until billing staff approve the first one ...
    assert {i.status for i in invoices} == {InvoiceStatus.HELD}
    # ... which releases the others
    with django_capture_on_commit_callbacks(execute=True):
        invoice_approve_and_issue(invoice_id=first.pk, actor=staff)
    assert set(Invoice.objects.filter(subscription=subscription).values_list("status", flat=True)) == {"open"}
    subscription.refresh_from_db()
    assert subscription.current_period_start == utc(2026, 11, 1)


def test_billing_run_rerun_creates_nothing_new(customer, team, staff):
    established(customer, staff)
    _subscribe(customer, team)
    billing_run(as_of=utc(2026, 10, 15))
    count = Invoice.objects.count()
    again = billing_run(as_of=utc(2026, 10, 15))
    assert (again.renewed, again.drafted) == (0, 0)
    assert Invoice.objects.count() == count


def test_billing_run_issues_clean_invoices_of_established_customer(customer, team, staff):
    established(customer, staff)
    _subscribe(customer, team)
    result = billing_run(as_of=utc(2026, 9, 1))
    assert (result.drafted, result.issued, result.held) == (2, 2, 0)
    numbers = list(
        Invoice.objects.filter(kind=InvoiceKind.REGULAR).order_by("period_start").values_list("number", flat=True)
    )
    assert all(numbers) and numbers[0] < numbers[1]


def test_billing_run_skips_trials_and_bills_from_trial_end(customer, team, staff):
    established(customer, staff)
    subscription = _subscribe(customer, team, trial=True)
    assert subscription.status == SubscriptionStatus.TRIALING
    assert billing_run(as_of=utc(2026, 8, 10)).drafted == 0
    billing_run(as_of=utc(2026, 8, 16))
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.period_start == utc(2026, 8, 15)
    assert invoice.lines.filter(kind=LineKind.SETUP).exists()


def test_billing_run_collects_pending_items_once(customer, team, staff):
    established(customer, staff)
    subscription = _subscribe(customer, team)
    billing_run(as_of=utc(2026, 8, 2))
    item = PendingInvoiceItem.objects.create(
        customer=customer,
        subscription=subscription,
        description="3 more seats, prorated",
        amount_minor=1_500,
        unit_amount_minor=500,
        quantity=3,
        currency="USD",
    )
    billing_run(as_of=utc(2026, 9, 2))
    item.refresh_from_db()
    september = Invoice.objects.get(subscription=subscription, period_start=utc(2026, 9, 1))
    assert item.invoice == september
    assert september.lines.filter(kind=LineKind.PRORATION, amount_minor=1_500).exists()
    billing_run(as_of=utc(2026, 10, 2))
    october = Invoice.objects.get(subscription=subscription, period_start=utc(2026, 10, 1))
    assert not october.lines.filter(kind=LineKind.PRORATION).exists()


def test_billing_run_ends_canceled_at_period_end_without_billing(customer, team, staff):
    established(customer, staff)
    subscription = _subscribe(customer, team)
    billing_run(as_of=utc(2026, 8, 2))
    Subscription.objects.filter(pk=subscription.pk).update(cancel_at_period_end=True)
    billing_run(as_of=utc(2026, 9, 2))
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.ENDED
    assert Invoice.objects.filter(subscription=subscription).count() == 1


def test_billing_run_command_with_as_of(customer, team, staff, capsys):
    established(customer, staff)
    _subscribe(customer, team)
    call_command("billing_run", "--as-of", "2026-09-01")
    assert "2 drafted" in capsys.readouterr().out
    call_command("billing_run", "--as-of", "2026-09-01")
    assert "0 drafted" in capsys.readouterr().out


def test_billing_run_chunks_many_subscriptions(team, staff):
    for n in range(7):
        customer = CustomerFactory(name=f"C{n}")
        BillingProfileFactory(customer=customer)
        _subscribe(customer, team)
    result = billing_run(as_of=utc(2026, 9, 1), chunk_size=3, finalize=False)
    assert (result.renewed, result.drafted) == (7, 14)
    assert Invoice.objects.filter(status=InvoiceStatus.DRAFT).count() == 14
