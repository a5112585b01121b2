"""Dunning: retries on the configured schedule, past_due after the grace period, the final action, and recovery."""

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from billing.models import BillingProfile, DunningCase, DunningStage, InvoiceStatus, Payment, PaymentStatus
from billing.services import dunning, payments
from subscriptions.models import AuditEvent, SubscriptionStatus
from subscriptions.services.subscriptions import subscription_create
from tests.billing.stripe_support import (
    CARD_DECLINED_ON_CHARGE,
    CARD_OK,
    open_invoice,
    save_card,
)
from tests.factories import CustomerFactory, MembershipFactory, priced_package

pytestmark = pytest.mark.django_db


@pytest.fixture
def dunning_settings(settings):
    settings.DUNNING_RETRY_DAYS = [1, 3, 5, 7]
    settings.DUNNING_GRACE_DAYS = 3
    settings.DUNNING_FINAL_ACTION = "uncollectible"
    return settings


@pytest.fixture
def subscribed(stripe_server, dunning_settings):
    customer = CustomerFactory(name="Globex", legal_name="Globex LLC")
    BillingProfile.objects.create(customer=customer, legal_name="Globex LLC", billing_emails=["ap@globex.test"])
    subscription = subscription_create(customer=customer, package=priced_package(), interval="month", seats=5)
    save_card(stripe_server, customer=customer, number=CARD_DECLINED_ON_CHARGE)
    invoice = open_invoice(customer=customer, subscription=subscription, amount_minor=10_000)
    return customer, subscription, invoice


def _fail_first_collection(invoice, capture):
    with capture(execute=True):
        payment = payments.invoice_collect(invoice_id=invoice.pk)
    assert payment.status == PaymentStatus.FAILED
    return DunningCase.objects.get(invoice=invoice)


def test_dunning_retries_on_schedule_then_past_due_then_uncollectible(subscribed, django_capture_on_commit_callbacks):
    customer, subscription, invoice = subscribed
    case = _fail_first_collection(invoice, django_capture_on_commit_callbacks)
    start = case.started_at
    assert case.next_retry_at == start + timedelta(days=1)
    assert [m.subject for m in mail.outbox] == [f"Payment failed for invoice {invoice}"]

    # nothing is due before the first retry day
    assert dunning.dunning_run(now=start + timedelta(hours=23)) == 0

    # day 1: retry 1 fails; still within the grace period
    with django_capture_on_commit_callbacks(execute=True):
        dunning.dunning_run(now=start + timedelta(days=1))
    case.refresh_from_db()
    subscription.refresh_from_db()
    assert (case.retries_done, case.stage, subscription.status) == (1, DunningStage.RETRYING, SubscriptionStatus.ACTIVE)
    assert case.next_retry_at == start + timedelta(days=3)

    # day 3: retry 2 fails; grace period over → past_due, access kept, customer told
    with django_capture_on_commit_callbacks(execute=True):
        dunning.dunning_run(now=start + timedelta(days=3))
    case.refresh_from_db()
    subscription.refresh_from_db()
    assert (case.retries_done, case.stage, subscription.status) == (
        2,
        DunningStage.PAST_DUE,
        SubscriptionStatus.PAST_DUE,
    )
    assert mail.outbox[-1].subject == f"Invoice {invoice} is past due"

    # days 5 and 7: the final retry fails → invoice uncollectible, subscription stays past_due
    dunning.dunning_run(now=start + timedelta(days=5))
    with django_capture_on_commit_callbacks(execute=True):
        dunning.dunning_run(now=start + timedelta(days=7))
    case.refresh_from_db()
    invoice.refresh_from_db()
    subscription.refresh_from_db()
    assert (case.retries_done, case.stage, case.final_action) == (4, DunningStage.EXHAUSTED, "uncollectible")
    assert invoice.status == InvoiceStatus.UNCOLLECTIBLE
    assert subscription.status == SubscriptionStatus.PAST_DUE
    assert Payment.objects.filter(invoice=invoice).count() == 5  # first attempt + 4 retries, each its own row
    assert dunning.dunning_run(now=start + timedelta(days=30)) == 0

    timeline = list(AuditEvent.objects.filter(customer=customer).values_list("action", flat=True))
    for action in ("dunning.started", "dunning.retry", "dunning.past_due", "dunning.exhausted"):
        assert action in timeline


def test_dunning_run_twice_for_the_same_slot_charges_once(subscribed, django_capture_on_commit_callbacks):
    _, _, invoice = subscribed
    case = _fail_first_collection(invoice, django_capture_on_commit_callbacks)
    day1 = case.started_at + timedelta(days=1)

    dunning.dunning_run(now=day1)
    dunning.dunning_run(now=day1)

    case.refresh_from_db()
    assert case.retries_done == 1
    assert Payment.objects.filter(invoice=invoice).count() == 2


def test_dunning_retry_days_come_from_settings(subscribed, dunning_settings, django_capture_on_commit_callbacks):
    dunning_settings.DUNNING_RETRY_DAYS = [2, 4]
    _, _, invoice = subscribed

    case = _fail_first_collection(invoice, django_capture_on_commit_callbacks)

    assert case.next_retry_at == case.started_at + timedelta(days=2)


def test_dunning_final_action_cancel_cancels_subscription(
    subscribed, dunning_settings, django_capture_on_commit_callbacks
):
    dunning_settings.DUNNING_RETRY_DAYS = [1]
    dunning_settings.DUNNING_GRACE_DAYS = 1
    dunning_settings.DUNNING_FINAL_ACTION = "cancel"
    customer, subscription, invoice = subscribed
    case = _fail_first_collection(invoice, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        dunning.dunning_run(now=case.started_at + timedelta(days=1))

    case.refresh_from_db()
    subscription.refresh_from_db()
    invoice.refresh_from_db()
    assert (case.stage, case.final_action) == (DunningStage.EXHAUSTED, "cancel")
    assert subscription.status == SubscriptionStatus.CANCELED
    assert invoice.status == InvoiceStatus.UNCOLLECTIBLE
    assert "canceled" in mail.outbox[-1].body


def test_dunning_paying_restores_past_due_subscription(stripe_server, subscribed, django_capture_on_commit_callbacks):
    customer, subscription, invoice = subscribed
    owner = MembershipFactory(customer=customer).user
    case = _fail_first_collection(invoice, django_capture_on_commit_callbacks)
    dunning.dunning_run(now=case.started_at + timedelta(days=1))
    dunning.dunning_run(now=case.started_at + timedelta(days=3))
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAST_DUE

    # the customer adds a working card and pays from the e-mailed link
    good = save_card(stripe_server, customer=customer, number=CARD_OK, actor=owner)
    result = payments.invoice_pay_now(
        invoice_id=invoice.pk, customer_id=customer.pk, payment_method_id=good.pk, actor=owner
    )

    assert result.payment.status == PaymentStatus.SUCCEEDED
    invoice.refresh_from_db()
    case.refresh_from_db()
    subscription.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert case.stage == DunningStage.RECOVERED and case.next_retry_at is None
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert AuditEvent.objects.filter(customer=customer, action="dunning.recovered").exists()
    assert dunning.dunning_run(now=case.started_at + timedelta(days=5)) == 0


def test_dunning_bank_transfer_closes_case(subscribed, django_capture_on_commit_callbacks):
    _, _, invoice = subscribed
    case = _fail_first_collection(invoice, django_capture_on_commit_callbacks)

    payments.payment_record_manual(invoice_id=invoice.pk, amount_minor=10_000, reference="WIRE-77", actor=None)

    case.refresh_from_db()
    assert case.stage == DunningStage.RECOVERED
    assert dunning.dunning_run(now=timezone.now() + timedelta(days=10)) == 0


def test_dunning_payment_failed_twice_for_same_invoice_sends_one_email(subscribed, django_capture_on_commit_callbacks):
    _, _, invoice = subscribed
    case = _fail_first_collection(invoice, django_capture_on_commit_callbacks)
    payment = Payment.objects.get(invoice=invoice)

    with django_capture_on_commit_callbacks(execute=True):
        again = dunning.dunning_payment_failed(invoice_id=invoice.pk, payment_id=payment.pk)

    assert again.pk == case.pk
    assert len(mail.outbox) == 1
