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


# --- the batch renewal path drafts exactly what the per-subscription path drafts -----------------------------------


def _invoices_state() -> list:
    """Every regular invoice with its lines, tax lines and status rows, and the pending items it collected —
    keyed by (subscription, period start), without generated ids or timestamps."""
    from billing.models import InvoiceLine, InvoiceStatusChange, InvoiceTaxLine

    state = []
    for invoice in Invoice.objects.filter(kind=InvoiceKind.REGULAR).order_by("subscription_id", "period_start"):
        fields = {
            f.attname: getattr(invoice, f.attname)
            for f in Invoice._meta.concrete_fields
            if f.name not in ("id", "created_at", "updated_at", "pdf_file")
        }
        lines = list(
            InvoiceLine.objects.filter(invoice=invoice)
            .order_by("position")
            .values_list(
                "position",
                "kind",
                "description",
                "sku_code",
                "period_start",
                "period_end",
                "quantity",
                "unit_amount_minor",
                "amount_minor",
                "is_proration",
                "tax_category",
                "tax_rate",
                "tax_name",
                "subscription_change_id",
            )
        )
        tax_lines = list(
            InvoiceTaxLine.objects.filter(invoice=invoice)
            .order_by("name")
            .values_list("tax_rate_id", "name", "jurisdiction", "rate", "taxable_amount_minor", "tax_amount_minor")
        )
        statuses = list(InvoiceStatusChange.objects.filter(invoice=invoice).values_list("from_status", "to_status"))
        collected = sorted(PendingInvoiceItem.objects.filter(invoice=invoice).values_list("pk", flat=True))
        state.append((fields, lines, tax_lines, statuses, collected))
    return state


def _renew_one_subscription_at_a_time(as_of):
    """The billing run's renewal as it was before the batch path: subscription_renew per subscription, then the
    drafting of each started period from the renewal's lines."""
    from billing.services.billing_run import PeriodToBill, _subscriptions_for_drafting, draft_periods
    from billing.services.changes import changes_bill_unbilled
    from subscriptions.services.lifecycle import subscription_renew, subscriptions_due_for_renewal

    changes_bill_unbilled()
    for subscription_id in subscriptions_due_for_renewal(as_of=as_of):
        result = subscription_renew(subscription_id=subscription_id, as_of=as_of)
        if result is None or not result.periods:
            continue
        [subscription] = _subscriptions_for_drafting([subscription_id], with_addons=False)
        draft_periods(
            periods=[
                PeriodToBill(
                    subscription=subscription,
                    period_start=p.period_start,
                    period_end=p.period_end,
                    seats=p.seats,
                    lines=list(p.lines),
                )
                for p in result.periods
            ]
        )


def test_billing_run_batch_renewal_drafts_what_the_per_subscription_path_drafts(customer, team, ca_tax, staff):
    from django.db import transaction

    from billing.services.billing_run import draft_due
    from subscriptions.services.changes import subscription_cancel_apply, subscription_change_seats_apply

    # given established and new customers: plain renewals two periods behind, a scheduled seat decrease, a
    # cancellation at period end, a pending item, and a subscription started since the last run
    established(customer, staff)
    subscriptions = [_subscribe(customer, team)]
    for n in range(4):
        other = CustomerFactory(name=f"C{n}")
        BillingProfileFactory(customer=other)
        subscriptions.append(_subscribe(other, team))
    plain, decrease, canceling, pending, other = subscriptions
    billing_run(as_of=utc(2026, 8, 2))
    subscription_change_seats_apply(
        subscription_id=decrease.pk, seats=7, expected_version=decrease.version, actor=None, at=utc(2026, 8, 10)
    )
    subscription_cancel_apply(
        subscription_id=canceling.pk,
        reason="Too expensive",
        expected_version=canceling.version,
        actor=None,
        at=utc(2026, 8, 10),
    )
    PendingInvoiceItem.objects.create(
        customer=pending.customer,
        subscription=pending,
        description="2 more seats, prorated",
        amount_minor=1_250,
        unit_amount_minor=625,
        quantity=2,
        currency="USD",
    )
    newcomer = CustomerFactory(name="Newcomer")
    BillingProfileFactory(customer=newcomer)
    new = subscription_create(customer=newcomer, package=team, interval="month", seats=6, start=utc(2026, 9, 15))
    as_of = utc(2026, 10, 1, 0, 30)
    with transaction.atomic():
        draft_due(as_of=as_of)
        _renew_one_subscription_at_a_time(as_of)
        expected = _invoices_state()
        transaction.set_rollback(True)

    # when the billing run renews them in one batch
    result = billing_run(as_of=as_of, finalize=False)

    # then the same invoices, lines, tax and status rows exist, and each pending item went to the same invoice
    assert _invoices_state() == expected
    assert (result.renewed, result.drafted) == (5, 9)
    assert len(expected) == 4 * 3 + 1 + 1  # Aug, Sep, Oct each; the canceled one Aug only; the new one
    assert Invoice.objects.get(subscription=decrease, period_start=utc(2026, 9, 1)).billed_seats == 7
    assert not Invoice.objects.filter(subscription=canceling, period_start__gte=utc(2026, 9, 1)).exists()
    assert Invoice.objects.get(subscription=new).lines.filter(kind=LineKind.SETUP).exists()
    collected = PendingInvoiceItem.objects.get().invoice
    assert (collected.subscription, collected.period_start) == (pending, utc(2026, 9, 1))
    assert {i.subscription_id for i in Invoice.objects.filter(period_start=utc(2026, 10, 1))} == {
        plain.pk,
        decrease.pk,
        pending.pk,
        other.pk,
    }
    again = billing_run(as_of=as_of, finalize=False)
    assert (again.renewed, again.drafted) == (0, 0)
    assert _invoices_state() == expected


def test_billing_run_query_count_does_not_grow_with_subscriptions(team, staff, ca_tax):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def subscribers(n, start):
        for i in range(n):
            customer = CustomerFactory(name=f"{start}-{i}")
            BillingProfileFactory(customer=customer)
            subscription_create(customer=customer, package=team, interval="month", seats=10, start=start)

    subscribers(2, utc(2026, 8, 1))
    with CaptureQueriesContext(connection) as drafting_two:
        assert billing_run(as_of=utc(2026, 8, 1, 12), finalize=False).drafted == 2
    subscribers(6, utc(2026, 8, 2))
    with CaptureQueriesContext(connection) as drafting_six:
        assert billing_run(as_of=utc(2026, 8, 2, 12), finalize=False).drafted == 6
    assert len(drafting_six) == len(drafting_two)
    with CaptureQueriesContext(connection) as two:
        assert billing_run(as_of=utc(2026, 9, 1, 12), finalize=False).renewed == 2
    with CaptureQueriesContext(connection) as six:
        assert billing_run(as_of=utc(2026, 9, 2, 12), finalize=False).renewed == 6
    assert len(six) == len(two)


def test_billing_run_hands_long_lived_objects_back_to_the_garbage_collector(customer, team, staff):
    import gc

    _subscribe(customer, team)
    before = gc.get_freeze_count()
    billing_run(as_of=utc(2026, 9, 1), finalize=False)
    assert gc.get_freeze_count() == before == 0


def test_billing_run_finalizes_every_draft_it_made_in_slices(team, staff):
    for n in range(5):
        customer = CustomerFactory(name=f"F{n}")
        BillingProfileFactory(customer=customer)
        _subscribe(customer, team)
    result = billing_run(as_of=utc(2026, 9, 1), chunk_size=2)
    assert (result.drafted, result.issued + result.held) == (10, 10)
    assert not Invoice.objects.filter(status=InvoiceStatus.DRAFT).exists()
