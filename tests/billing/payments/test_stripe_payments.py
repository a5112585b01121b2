"""Payments against a real localstripe server on 127.0.0.1 (no network): customers, cards, collection, refunds."""

import pytest
from django.core import mail
from django.db import IntegrityError, transaction

from billing.exceptions import NotFound, PaymentInvalid, PaymentMethodNotSaved, PaymentNotPossible
from billing.models import (
    BillingProfile,
    DunningCase,
    InvoiceStatus,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    StripeCustomer,
)
from billing.services import payments
from subscriptions.models import AuditEvent
from tests.billing.stripe_support import (
    CARD_DECLINED_ON_ATTACH,
    CARD_DECLINED_ON_CHARGE,
    CARD_EXP_YEAR,
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    authenticate_payment,
    confirm_card_setup,
    credit_note_for,
    open_invoice,
    save_card,
)
from tests.factories import CustomerFactory, MembershipFactory

pytestmark = pytest.mark.django_db(transaction=False)


@pytest.fixture
def customer():
    customer = CustomerFactory(name="Acme", legal_name="Acme Corporation")
    BillingProfile.objects.create(
        customer=customer,
        legal_name="Acme Corporation",
        address_line1="1 Main Street",
        city="Springfield",
        region="CA",
        postal_code="90001",
        country="US",
        billing_emails=["ap@acme.test"],
    )
    return customer


def test_payment_backend_manual_without_secret_key(settings, customer):
    settings.STRIPE_SECRET_KEY = ""
    invoice = open_invoice(customer=customer)

    assert payments.payment_backend() == "manual"
    assert payments.invoice_collect(invoice_id=invoice.pk) is None
    with pytest.raises(PaymentNotPossible):
        payments.payment_method_setup_start(customer_id=customer.pk)


def test_stripe_customer_ensure_creates_one_customer_carrying_our_id(stripe_server, customer):
    link = payments.stripe_customer_ensure(customer_id=customer.pk)
    again = payments.stripe_customer_ensure(customer_id=customer.pk)

    assert again.pk == link.pk
    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert remote["metadata"] == {"continuum_customer_id": str(customer.pk)}
    assert remote["name"] == "Acme Corporation"
    assert remote["email"] == "ap@acme.test"
    assert remote["address"]["city"] == "Springfield"
    assert StripeCustomer.objects.filter(customer=customer).count() == 1


def test_stripe_customer_sync_pushes_billing_profile_changes(stripe_server, customer):
    link = payments.stripe_customer_ensure(customer_id=customer.pk)
    BillingProfile.objects.filter(customer=customer).update(
        legal_name="Acme Holdings Inc.", billing_emails=["invoices@acme.test"], city="Shelbyville"
    )

    assert payments.stripe_customer_sync(customer_id=customer.pk) is True

    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert (remote["name"], remote["email"], remote["address"]["city"]) == (
        "Acme Holdings Inc.",
        "invoices@acme.test",
        "Shelbyville",
    )


def test_payment_method_save_from_setup_intent_records_card_as_default(stripe_server, customer):
    method = save_card(stripe_server, customer=customer)

    assert (method.brand, method.last4, method.exp_year, method.is_default) == ("visa", "4242", CARD_EXP_YEAR, True)
    link = StripeCustomer.objects.get(customer=customer)
    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert remote["invoice_settings"]["default_payment_method"] == method.stripe_payment_method_id
    assert AuditEvent.objects.filter(customer=customer, action="payment_method.added").exists()


def test_payment_method_save_is_idempotent_for_page_and_webhook(stripe_server, customer):
    setup = payments.payment_method_setup_start(customer_id=customer.pk)
    confirm_card_setup(stripe_server, client_secret=setup.client_secret, number=CARD_OK)

    first = payments.payment_method_save_from_setup_intent(
        setup_intent_id=setup.setup_intent_id, customer_id=customer.pk
    )
    second = payments.payment_method_save_from_setup_intent(setup_intent_id=setup.setup_intent_id)

    assert first.pk == second.pk
    assert PaymentMethod.objects.filter(customer=customer).count() == 1


def test_payment_method_save_refuses_card_declined_when_attached(stripe_server, customer):
    # localstripe (like Stripe for this test card) refuses 4000000000000002 when the SetupIntent is confirmed.
    setup = payments.payment_method_setup_start(customer_id=customer.pk)
    result = confirm_card_setup(stripe_server, client_secret=setup.client_secret, number=CARD_DECLINED_ON_ATTACH)
    assert result["error"]["code"] == "card_declined"

    with pytest.raises(PaymentMethodNotSaved, match="declined"):
        payments.payment_method_save_from_setup_intent(setup_intent_id=setup.setup_intent_id, customer_id=customer.pk)
    assert not PaymentMethod.objects.filter(customer=customer).exists()


def test_payment_method_save_refuses_another_customers_setup_intent(stripe_server, customer):
    other = CustomerFactory()
    setup = payments.payment_method_setup_start(customer_id=other.pk)
    confirm_card_setup(stripe_server, client_secret=setup.client_secret, number=CARD_OK)

    with pytest.raises(NotFound):
        payments.payment_method_save_from_setup_intent(setup_intent_id=setup.setup_intent_id, customer_id=customer.pk)
    assert not PaymentMethod.objects.filter(customer=customer).exists()


def test_payment_method_set_default_and_remove_promotes_remaining_card(stripe_server, customer):
    first = save_card(stripe_server, customer=customer, number=CARD_OK)
    second = save_card(stripe_server, customer=customer, number="5555555555554444")
    assert not PaymentMethod.objects.get(pk=second.pk).is_default

    payments.payment_method_set_default(customer_id=customer.pk, payment_method_id=second.pk)
    payments.payment_method_remove(customer_id=customer.pk, payment_method_id=second.pk)

    first.refresh_from_db()
    second.refresh_from_db()
    assert first.is_default and second.removed_at is not None and not second.is_default
    assert stripe_server.get(f"/v1/payment_methods/{second.stripe_payment_method_id}")["customer"] is None
    link = StripeCustomer.objects.get(customer=customer)
    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert remote["invoice_settings"]["default_payment_method"] == first.stripe_payment_method_id
    with pytest.raises(NotFound):
        payments.payment_method_remove(customer_id=customer.pk, payment_method_id=second.pk)


def test_payment_method_remove_refuses_another_customers_card(stripe_server, customer):
    other = CustomerFactory()
    card = save_card(stripe_server, customer=other)

    with pytest.raises(NotFound):
        payments.payment_method_remove(customer_id=customer.pk, payment_method_id=card.pk)
    card.refresh_from_db()
    assert card.removed_at is None


def test_invoice_collect_charges_default_card_once(stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer, amount_minor=12_300)

    payment = payments.invoice_collect(invoice_id=invoice.pk)
    again = payments.invoice_collect(invoice_id=invoice.pk)

    assert again is None
    assert payment.status == PaymentStatus.SUCCEEDED and payment.attempt == 1 and payment.applied_at is not None
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert (invoice.amount_paid_minor, invoice.amount_due_minor) == (12_300, 0)
    intent = stripe_server.get(f"/v1/payment_intents/{payment.stripe_payment_intent_id}")
    assert intent["amount"] == 12_300 and intent["currency"] == "usd"
    assert intent["metadata"]["continuum_invoice_id"] == str(invoice.pk)
    link = StripeCustomer.objects.get(customer=customer)
    charges = stripe_server.get(f"/v1/charges?customer={link.stripe_customer_id}")["data"]
    assert len(charges) == 1
    assert AuditEvent.objects.filter(customer=customer, action="payment.succeeded").count() == 1


def test_invoice_collect_without_card_does_nothing(stripe_server, customer):
    invoice = open_invoice(customer=customer)

    assert payments.invoice_collect(invoice_id=invoice.pk) is None
    assert not Payment.objects.exists()


def test_payment_resume_never_charges_an_attempt_twice(stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer)
    # given: the attempt row was committed but the worker died before Stripe answered
    payment = payments._start_attempt(invoice_id=invoice.pk, method=None, off_session=True)

    # when: the attempt is resumed twice (a duplicate task)
    payments.payment_resume(payment_id=payment.pk)
    payments.payment_resume(payment_id=payment.pk)

    # then: one charge, one payment, invoice paid; and a second attempt number can never reuse (invoice, 1)
    link = StripeCustomer.objects.get(customer=customer)
    assert len(stripe_server.get(f"/v1/charges?customer={link.stripe_customer_id}")["data"]) == 1
    assert Payment.objects.get().status == PaymentStatus.SUCCEEDED
    with pytest.raises(IntegrityError), transaction.atomic():
        Payment.objects.create(
            invoice=invoice, customer=customer, attempt=1, kind=PaymentKind.CARD, amount_minor=1, currency="USD"
        )


def test_invoice_collect_declined_card_leaves_invoice_open_and_emails_pay_link(
    stripe_server, customer, django_capture_on_commit_callbacks
):
    save_card(stripe_server, customer=customer, number=CARD_DECLINED_ON_CHARGE)
    invoice = open_invoice(customer=customer)

    with django_capture_on_commit_callbacks(execute=True):
        payment = payments.invoice_collect(invoice_id=invoice.pk)

    assert payment.status == PaymentStatus.FAILED
    assert payment.failure_code == "card_declined"
    assert payment.failure_message == "Your card was declined."
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_paid_minor == 0
    assert DunningCase.objects.filter(invoice=invoice).exists()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ap@acme.test"]
    assert f"/invoices/{invoice.pk}/pay/" in mail.outbox[0].body
    assert "Your card was declined" in mail.outbox[0].body


def test_invoice_pay_now_with_authentication(stripe_server, customer):
    owner = MembershipFactory(customer=customer).user
    card = save_card(stripe_server, customer=customer, number=CARD_REQUIRES_AUTHENTICATION)
    invoice = open_invoice(customer=customer)

    result = payments.invoice_pay_now(
        invoice_id=invoice.pk, customer_id=customer.pk, payment_method_id=card.pk, actor=owner
    )
    assert result.requires_action and result.client_secret.startswith(result.payment.stripe_payment_intent_id)

    # the browser completes 3-D Secure with Stripe.js, then the page asks us to refresh the payment
    authenticate_payment(stripe_server, client_secret=result.client_secret)
    payment = payments.payment_sync_from_stripe(payment_id=result.payment.pk)

    assert payment.status == PaymentStatus.SUCCEEDED
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert not mail.outbox  # the customer was on the page: no dunning e-mail


def test_invoice_pay_now_refuses_another_customers_invoice(stripe_server, customer):
    card = save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=CustomerFactory())

    with pytest.raises(NotFound):
        payments.invoice_pay_now(invoice_id=invoice.pk, customer_id=customer.pk, payment_method_id=card.pk, actor=None)
    assert not Payment.objects.exists()


def test_credit_note_refund_refunds_card_once(stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer, amount_minor=10_000)
    payment = payments.invoice_collect(invoice_id=invoice.pk)
    credit_note = credit_note_for(invoice=invoice, amount_minor=2_500)

    refund = payments.credit_note_refund(credit_note_id=credit_note.pk)
    again = payments.credit_note_refund(credit_note_id=credit_note.pk)

    assert again.pk == refund.pk
    assert (refund.status, refund.amount_minor, refund.payment_id) == (RefundStatus.SUCCEEDED, 2_500, payment.pk)
    remote = stripe_server.get(f"/v1/refunds/{refund.stripe_refund_id}")
    assert remote["amount"] == 2_500
    assert remote["metadata"]["continuum_credit_note_id"] == str(credit_note.pk)
    charge = stripe_server.get(f"/v1/charges/{payment.stripe_charge_id}")
    assert charge["amount_refunded"] == 2_500
    assert Refund.objects.count() == 1


def test_credit_note_refund_of_bank_transfer_is_left_to_staff(stripe_server, customer):
    invoice = open_invoice(customer=customer, amount_minor=10_000)
    payments.payment_record_manual(invoice_id=invoice.pk, amount_minor=10_000, reference="BANK-1", actor=None)
    credit_note = credit_note_for(invoice=invoice, amount_minor=1_000)

    assert payments.credit_note_refund(credit_note_id=credit_note.pk) is None
    assert not Refund.objects.exists()


def test_payment_record_manual_applies_transfer(customer):
    invoice = open_invoice(customer=customer, amount_minor=10_000)

    payments.payment_record_manual(invoice_id=invoice.pk, amount_minor=4_000, reference="BANK-1", actor=None)
    payment = payments.payment_record_manual(invoice_id=invoice.pk, amount_minor=6_000, reference="BANK-2", actor=None)

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_due_minor == 0
    assert payment.attempt == 2 and payment.kind == PaymentKind.MANUAL and payment.applied_at is not None


@pytest.mark.parametrize(
    ("amount", "reference", "message"),
    [(0, "X", "positive"), (-5, "X", "positive"), (20_000, "X", "more than"), (100, "  ", "bank reference")],
)
def test_payment_record_manual_refuses_bad_input(customer, amount, reference, message):
    invoice = open_invoice(customer=customer, amount_minor=10_000)

    with pytest.raises(PaymentInvalid, match=message):
        payments.payment_record_manual(invoice_id=invoice.pk, amount_minor=amount, reference=reference, actor=None)
    invoice.refresh_from_db()
    assert invoice.amount_paid_minor == 0 and not Payment.objects.exists()
