"""Card refunds, Stripe customer syncs and accounting exports whose after-commit hand-off a broker outage lost are
done by the periodic sweep (billing/services/handoff_sweep.py), once; work that is fresh or in flight is left alone.
Stripe is a real localstripe on 127.0.0.1; the broker is a real Redis URL nobody listens on (`broker_down`)."""

from datetime import date, timedelta

import pytest
import time_machine
from celery import current_app
from django.utils import timezone

from billing.models import AccountingExport, ExportFormat, ExportStatus, Refund, RefundStatus, StripeCustomer
from billing.services import payments
from billing.services.credit_notes import credit_note_create
from billing.services.exports import accounting_export_request
from billing.services.handoff_sweep import LostHandoffs, lost_handoffs_sweep
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from billing.services.profiles import billing_profile_update
from billing.tasks import accounting_export_build_task, credit_note_refund_task, stripe_customer_sync_task
from tests.billing.stripe_support import save_card
from tests.subscriptions.test_dispatch import broker_down  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

NOTHING = LostHandoffs(credit_note_refunds=[], stripe_customer_syncs=[], accounting_exports=[])


def _later(minutes: int):
    return time_machine.travel(timezone.now() + timedelta(minutes=minutes), tick=False)


def _issue_paid_by_card(customer, staff, capture):
    """Issue an invoice with the broker up (eager): it is e-mailed and collected from the saved card."""
    draft = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Seats", unit_amount_minor=10_000)]
    )
    current_app.conf.task_always_eager = True
    with capture(execute=True):
        invoice = invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)
    current_app.conf.task_always_eager = False
    return invoice


def _credit_whole(invoice, staff, capture):
    with capture(execute=True):
        return credit_note_create(invoice_id=invoice.pk, reason_code="wrong_seat_count", actor=staff)


def _stripe_refunds(server, payment) -> list[dict]:
    return [r for r in server.get("/v1/refunds")["data"] if r["charge"] == payment.stripe_charge_id]


@pytest.mark.usefixtures("broker_down")
def test_a_card_refund_whose_hand_off_was_lost_is_made_once_by_the_sweep(
    stripe_server, customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    # given: an invoice paid by card; its credit note's refund task is refused by the broker
    save_card(stripe_server, customer=customer)
    invoice = _issue_paid_by_card(customer, staff, django_capture_on_commit_callbacks)
    payment = invoice.payments.get()
    note = _credit_whole(invoice, staff, django_capture_on_commit_callbacks)
    assert note.refund_due_minor == payment.amount_minor > 0
    assert not Refund.objects.filter(credit_note=note).exists()
    assert _stripe_refunds(stripe_server, payment) == []

    # when: the broker is back; within the grace period the sweep leaves it alone, after it the refund is queued
    current_app.conf.task_always_eager = True
    assert lost_handoffs_sweep() == NOTHING
    with _later(11):
        result = lost_handoffs_sweep()

    # then: the card gets its money back, once
    assert result.credit_note_refunds == [note.pk]
    refund = Refund.objects.get(credit_note=note)
    assert (refund.status, refund.amount_minor, refund.payment_id) == (
        RefundStatus.SUCCEEDED,
        payment.amount_minor,
        payment.pk,
    )
    assert [r["amount"] for r in _stripe_refunds(stripe_server, payment)] == [payment.amount_minor]

    # when: the sweep runs again, and the original message turns up late after all
    with _later(22):
        assert lost_handoffs_sweep() == NOTHING
    credit_note_refund_task.delay(note.pk)

    # then: still one refund, here and at Stripe
    assert Refund.objects.filter(credit_note=note).count() == 1
    assert len(_stripe_refunds(stripe_server, payment)) == 1


@pytest.mark.usefixtures("broker_down")
def test_the_sweep_leaves_a_refund_in_flight_or_owed_by_transfer_alone(
    stripe_server, customer, staff, ca_tax, django_capture_on_commit_callbacks
):
    # given: a card refund the task has started (its row is pending while Stripe is asked) ...
    save_card(stripe_server, customer=customer)
    invoice = _issue_paid_by_card(customer, staff, django_capture_on_commit_callbacks)
    payment = invoice.payments.get()
    started = _credit_whole(invoice, staff, django_capture_on_commit_callbacks)
    Refund.objects.create(credit_note=started, payment=payment, amount_minor=1_000, currency="USD")
    # ... and an invoice paid by bank transfer, whose credit note is owed back by billing staff
    draft = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Setup", unit_amount_minor=5_000)]
    )
    with django_capture_on_commit_callbacks(execute=True):
        by_transfer = invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)
    by_transfer.refresh_from_db()
    payments.payment_record_manual(
        invoice_id=by_transfer.pk, amount_minor=by_transfer.total_minor, reference="BANK-1", actor=staff
    )
    owed = _credit_whole(by_transfer, staff, django_capture_on_commit_callbacks)
    assert owed.refund_due_minor > 0

    # when: the sweep runs well after the grace period
    current_app.conf.task_always_eager = True
    with _later(30):
        result = lost_handoffs_sweep()

    # then: neither is queued; nothing goes to Stripe
    assert result.credit_note_refunds == []
    assert _stripe_refunds(stripe_server, payment) == []
    assert not Refund.objects.filter(credit_note=owed).exists()


@pytest.mark.usefixtures("broker_down")
def test_a_billing_profile_change_whose_stripe_sync_was_lost_reaches_stripe_through_the_sweep(
    stripe_server, customer, django_capture_on_commit_callbacks
):
    # given: a customer with a Stripe customer changes its billing details; the sync task is refused by the broker
    link = payments.stripe_customer_ensure(customer_id=customer.pk)
    with django_capture_on_commit_callbacks(execute=True):
        billing_profile_update(customer=customer, legal_name="Acme Holdings Inc.", city="Palo Alto")
    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert (remote["name"], remote["address"]["city"]) == ("Acme Incorporated", "Cupertino")

    # when: within the grace period the sweep leaves it alone; after it the sync is queued
    current_app.conf.task_always_eager = True
    assert lost_handoffs_sweep() == NOTHING
    with _later(11):
        result = lost_handoffs_sweep()

    # then: Stripe holds the new details, and the customer is in sync, so later sweeps send nothing
    assert result.stripe_customer_syncs == [customer.pk]
    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert (remote["name"], remote["address"]["city"]) == ("Acme Holdings Inc.", "Palo Alto")
    with _later(22):
        assert lost_handoffs_sweep() == NOTHING
    # a late original message pushes the same details again: harmless
    assert stripe_customer_sync_task.delay(customer.pk).get() is True
    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert (remote["name"], remote["address"]["city"]) == ("Acme Holdings Inc.", "Palo Alto")


def test_the_sweep_leaves_customers_in_sync_with_stripe_and_customers_without_one_alone(
    stripe_server, customer, django_capture_on_commit_callbacks
):
    # given: one customer's change reached Stripe normally; another customer has no Stripe customer at all
    current_app.conf.task_always_eager = True
    payments.stripe_customer_ensure(customer_id=customer.pk)
    with django_capture_on_commit_callbacks(execute=True):
        billing_profile_update(customer=customer, legal_name="Acme Holdings Inc.")
    assert StripeCustomer.objects.get(customer=customer).synced_at is not None

    # when / then: nothing to sync, however late the sweep runs
    with _later(11):
        assert lost_handoffs_sweep().stripe_customer_syncs == []


@pytest.mark.usefixtures("broker_down")
def test_an_accounting_export_whose_build_hand_off_was_lost_is_built_once_by_the_sweep(
    staff, customer, django_capture_on_commit_callbacks
):
    # given: billing staff request an export; the build task is refused by the broker
    with django_capture_on_commit_callbacks(execute=True):
        export = accounting_export_request(
            actor=staff, start=date(2025, 1, 1), end=date(2025, 2, 1), format=ExportFormat.CSV
        )
    assert AccountingExport.objects.get(pk=export.pk).status == ExportStatus.QUEUED

    # when: within the grace period the sweep leaves it alone; after it the build is queued
    current_app.conf.task_always_eager = True
    assert lost_handoffs_sweep() == NOTHING
    with _later(11):
        result = lost_handoffs_sweep()

    # then: the file is ready to download
    assert result.accounting_exports == [export.pk]
    built = AccountingExport.objects.get(pk=export.pk)
    assert (built.status, built.progress) == (ExportStatus.DONE, 100)
    assert built.file.name.endswith(".zip")

    # when: the sweep runs again, and the original message turns up late
    with _later(22):
        assert lost_handoffs_sweep() == NOTHING
    assert accounting_export_build_task.delay(export.pk).get() == ExportStatus.DONE

    # then: the export was built once: same file, same finish time
    again = AccountingExport.objects.get(pk=export.pk)
    assert (again.file.name, again.finished_at) == (built.file.name, built.finished_at)


@pytest.mark.usefixtures("broker_down")
def test_the_sweep_leaves_running_finished_and_old_exports_alone(staff):
    def export(status):
        return AccountingExport.objects.create(
            requested_by=staff, start=date(2025, 1, 1), end=date(2025, 2, 1), status=status
        )

    export(ExportStatus.RUNNING)  # a worker is building it
    export(ExportStatus.FAILED)  # staff see the error and ask again
    export(ExportStatus.DONE)
    queued = export(ExportStatus.QUEUED)

    with _later(11):
        assert lost_handoffs_sweep().accounting_exports == [queued.pk]  # the broker is still down: it stays queued
    assert AccountingExport.objects.get(pk=queued.pk).status == ExportStatus.QUEUED
    with _later(8 * 24 * 60):
        assert lost_handoffs_sweep().accounting_exports == []  # outside the window: not retried forever
