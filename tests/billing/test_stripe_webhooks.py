"""POST /stripe/webhook/: signatures, replays, duplicates, out-of-order delivery, each handled event type, retries,
and real deliveries signed by localstripe itself to a live server."""

import json
import time

import pytest
from django.urls import reverse

from billing.models import (
    ExternalRefund,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    StripeEvent,
    StripeEventStatus,
)
from billing.services import payments
from billing.services.stripe_events import stripe_event_process, stripe_event_retry
from subscriptions.models import AuditEvent
from tests.billing.stripe_support import (
    CARD_DECLINED_ON_CHARGE,
    WEBHOOK_SECRET,
    confirm_card_setup,
    credit_note_for,
    event_payload,
    open_invoice,
    save_card,
    signed_headers,
)
from tests.factories import CustomerFactory, UserFactory

URL = "/stripe/webhook/"

# Transactional: the view stores the event and queues processing on commit, as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def post_event(client, payload: bytes, **signing):
    return client.post(URL, data=payload, content_type="application/json", **signed_headers(payload, **signing))


@pytest.fixture
def customer():
    return CustomerFactory(name="Acme", legal_name="Acme Corporation")


def test_stripe_webhook_url_is_wired():
    assert reverse("stripe_webhook") == URL


def test_stripe_webhook_forged_signature_is_refused_and_nothing_stored(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    payload = event_payload(event_type="payment_intent.succeeded", obj={"id": "pi_forged", "object": "payment_intent"})

    forged = post_event(client, payload, secret="whsec_somebody_else")
    unsigned = client.post(URL, data=payload, content_type="application/json")
    tampered = client.post(
        URL,
        data=payload.replace(b"pi_forged", b"pi_tampered"),
        content_type="application/json",
        **signed_headers(payload),
    )

    assert (forged.status_code, unsigned.status_code, tampered.status_code) == (400, 400, 400)
    assert not StripeEvent.objects.exists()


def test_stripe_webhook_replay_older_than_tolerance_is_refused(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    payload = event_payload(event_type="payment_intent.succeeded", obj={"id": "pi_old", "object": "payment_intent"})

    response = post_event(client, payload, timestamp=int(time.time()) - 301)

    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_stripe_webhook_timestamped_in_the_future_is_refused(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    payload = event_payload(event_type="payment_intent.succeeded", obj={"id": "pi_future", "object": "payment_intent"})

    a_day_ahead = post_event(client, payload, timestamp=int(time.time()) + 86_400)
    just_past_tolerance = post_event(client, payload, timestamp=int(time.time()) + 301)

    assert (a_day_ahead.status_code, just_past_tolerance.status_code) == (400, 400)
    assert not StripeEvent.objects.exists()


def test_stripe_webhook_slightly_ahead_clock_is_accepted(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    payload = event_payload(event_type="customer.updated", obj={"id": "cus_1", "object": "customer"})

    response = post_event(client, payload, timestamp=int(time.time()) + 240)

    assert response.status_code == 200


def test_stripe_webhook_within_tolerance_is_accepted(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    payload = event_payload(event_type="customer.updated", obj={"id": "cus_1", "object": "customer"})

    response = post_event(client, payload, timestamp=int(time.time()) - 240)

    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEventStatus.IGNORED


def test_stripe_webhook_without_configured_secret_refuses_everything(client, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload = event_payload(event_type="customer.updated", obj={"id": "cus_1", "object": "customer"})

    assert post_event(client, payload, secret="").status_code == 400
    assert not StripeEvent.objects.exists()


def test_stripe_webhook_duplicate_delivery_is_a_noop(client, stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer)
    payment = payments.invoice_collect(invoice_id=invoice.pk)
    payload = event_payload(
        event_type="payment_intent.succeeded",
        obj={"id": payment.stripe_payment_intent_id, "object": "payment_intent", "status": "succeeded"},
    )

    first = post_event(client, payload)
    second = post_event(client, payload)

    assert first.status_code == second.status_code == 200
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    event = StripeEvent.objects.get()
    assert (event.status, event.attempts) == (StripeEventStatus.PROCESSED, 1)
    invoice.refresh_from_db()
    assert invoice.amount_paid_minor == payment.amount_minor  # applied once


def test_stripe_webhook_out_of_order_failure_after_success_keeps_payment_paid(client, stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer)
    payment = payments.invoice_collect(invoice_id=invoice.pk)
    intent = {"id": payment.stripe_payment_intent_id, "object": "payment_intent"}
    now = int(time.time())

    # given: the success arrives first, then an OLDER failure report for the same intent
    post_event(client, event_payload(event_type="payment_intent.succeeded", obj=intent, created=now))
    response = post_event(
        client,
        event_payload(
            event_type="payment_intent.payment_failed",
            obj={**intent, "status": "requires_payment_method", "last_payment_error": {"message": "declined"}},
            created=now - 60,
        ),
    )

    # then: the current state (succeeded) wins
    assert response.status_code == 200
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED and invoice.status == InvoiceStatus.PAID
    assert invoice.amount_paid_minor == payment.amount_minor


def test_stripe_webhook_success_arriving_before_our_own_record_is_applied(client, stripe_server, customer):
    # given: Stripe charged the card but our worker died before it stored the intent id (payment still pending)
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer)
    payment = payments._start_attempt(invoice_id=invoice.pk, method=None, off_session=True)
    link = payment.customer.stripe_link
    intent = stripe_server.post(
        "/v1/payment_intents",
        {
            "amount": payment.amount_minor,
            "currency": "usd",
            "customer": link.stripe_customer_id,
            "payment_method": payment.payment_method.stripe_payment_method_id,
            "confirm": True,
            "off_session": True,
            "metadata": {"continuum_payment_id": str(payment.pk), "continuum_invoice_id": str(invoice.pk)},
        },
    )

    # when: the webhook arrives
    post_event(client, event_payload(event_type="payment_intent.succeeded", obj={"id": intent["id"]}))

    # then: the payment is found through the intent's metadata and applied
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.stripe_payment_intent_id == intent["id"] and payment.status == PaymentStatus.SUCCEEDED
    assert invoice.status == InvoiceStatus.PAID


def test_stripe_webhook_setup_intent_succeeded_saves_card(client, stripe_server, customer):
    setup = payments.payment_method_setup_start(customer_id=customer.pk)
    confirm_card_setup(stripe_server, client_secret=setup.client_secret, number="4242424242424242")

    response = post_event(client, event_payload(event_type="setup_intent.succeeded", obj={"id": setup.setup_intent_id}))

    assert response.status_code == 200
    method = PaymentMethod.objects.get(customer=customer)
    assert (method.last4, method.is_default) == ("4242", True)
    assert StripeEvent.objects.get().status == StripeEventStatus.PROCESSED


def test_stripe_webhook_payment_method_detached_forgets_card(client, stripe_server, customer):
    method = save_card(stripe_server, customer=customer)
    stripe_server.post(f"/v1/payment_methods/{method.stripe_payment_method_id}/detach")  # e.g. in Stripe's dashboard

    post_event(client, event_payload(event_type="payment_method.detached", obj={"id": method.stripe_payment_method_id}))

    method.refresh_from_db()
    assert method.removed_at is not None and not method.is_default


def test_stripe_webhook_stale_detach_of_reattached_card_is_ignored(client, stripe_server, customer):
    method = save_card(stripe_server, customer=customer)  # still attached at Stripe: the detach event is stale

    post_event(client, event_payload(event_type="payment_method.detached", obj={"id": method.stripe_payment_method_id}))

    method.refresh_from_db()
    assert method.removed_at is None
    assert StripeEvent.objects.get().status == StripeEventStatus.IGNORED


def _charge_refunded(client, payment, amount_refunded: int):
    obj = {"id": payment.stripe_charge_id, "object": "charge", "amount_refunded": amount_refunded}
    return post_event(client, event_payload(event_type="charge.refunded", obj=obj))


def test_stripe_webhook_charge_refunded_confirms_refund(client, stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer, amount_minor=10_000)
    payment = payments.invoice_collect(invoice_id=invoice.pk)
    credit_note = credit_note_for(invoice=invoice, amount_minor=1_000)
    # given: our refund reached Stripe, but the process died before it stored Stripe's id
    stripe_server.post(
        "/v1/refunds",
        {"charge": payment.stripe_charge_id, "amount": 1_000, "metadata": {"continuum_credit_note_id": credit_note.pk}},
    )
    refund = Refund.objects.create(credit_note=credit_note, payment=payment, amount_minor=1_000, currency="USD")

    _charge_refunded(client, payment, 1_000)

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED and refund.stripe_refund_id.startswith("re_")
    assert not ExternalRefund.objects.exists()  # ours, not one made outside Continuum


def test_stripe_webhook_duplicated_and_out_of_order_refund_events_converge_to_stripes_total(
    client, stripe_server, customer
):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer, amount_minor=10_000)
    payment = payments.invoice_collect(invoice_id=invoice.pk)
    # given: two refunds made in Stripe's dashboard, $10 then $5 — Stripe's running total is $15
    stripe_server.post("/v1/refunds", {"charge": payment.stripe_charge_id, "amount": 1_000})
    stripe_server.post("/v1/refunds", {"charge": payment.stripe_charge_id, "amount": 500})

    # when: Stripe's events arrive with snapshot amounts 1000, 1500, then a late 1000 (and one twice)
    for amount in (1_000, 1_500, 1_000):
        assert _charge_refunded(client, payment, amount).status_code == 200
    stripe_event_process(event_id=StripeEvent.objects.filter(type="charge.refunded").first().pk)

    # then: one entry per Stripe refund, totalling Stripe's $15, each announced once
    external = ExternalRefund.objects.filter(payment=payment)
    assert sorted(e.amount_minor for e in external) == [500, 1_000]
    timeline = AuditEvent.objects.filter(customer=customer, action="refund.external")
    assert timeline.count() == 2
    assert {"$10.00", "$5.00"} == {s.split(" of the payment")[0] for s in timeline.values_list("summary", flat=True)}


def test_stripe_webhook_event_amounts_are_never_trusted(client, stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer, amount_minor=10_000)
    payment = payments.invoice_collect(invoice_id=invoice.pk)

    # A correctly signed event claims a refund Stripe does not hold.
    _charge_refunded(client, payment, 9_000)

    assert not ExternalRefund.objects.exists()
    assert not AuditEvent.objects.filter(action="refund.external").exists()


def test_stripe_webhook_our_own_card_refund_is_not_reported_as_external(client, stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer, amount_minor=10_000)
    payment = payments.invoice_collect(invoice_id=invoice.pk)
    refund = payments.credit_note_refund(credit_note_id=credit_note_for(invoice=invoice, amount_minor=2_000).pk)

    _charge_refunded(client, payment, 2_000)
    _charge_refunded(client, payment, 2_000)

    refund.refresh_from_db()
    assert refund.status == RefundStatus.SUCCEEDED
    assert not ExternalRefund.objects.exists()


def test_stripe_webhook_dispute_flags_payment_on_timeline(client, stripe_server, customer):
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer)
    payment = payments.invoice_collect(invoice_id=invoice.pk)

    post_event(
        client,
        event_payload(
            event_type="charge.dispute.created",
            obj={"id": "dp_1", "object": "dispute", "charge": payment.stripe_charge_id, "reason": "fraudulent"},
        ),
    )

    payment.refresh_from_db()
    assert payment.disputed_at is not None
    audit = AuditEvent.objects.get(customer=customer, action="payment.disputed")
    assert "fraudulent" in audit.summary


def test_stripe_event_failed_processing_is_recorded_and_retried(client, stripe_server, customer, settings):
    method = save_card(stripe_server, customer=customer)
    stripe_server.post(f"/v1/payment_methods/{method.stripe_payment_method_id}/detach")
    payload = event_payload(event_type="payment_method.detached", obj={"id": method.stripe_payment_method_id})
    good_base = settings.STRIPE_API_BASE

    # given: Stripe is unreachable while the event is processed
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"
    response = post_event(client, payload)
    assert response.status_code == 200  # stored: Stripe must not redeliver because of our own outage
    event = StripeEvent.objects.get(type="payment_method.detached")
    assert event.status == StripeEventStatus.FAILED and "Stripe" in event.error
    method.refresh_from_db()
    assert method.removed_at is None

    # when: billing staff retry it once Stripe is back
    settings.STRIPE_API_BASE = good_base
    staff = UserFactory(is_staff=True)
    status = stripe_event_retry(event_id=event.pk, actor=staff)

    # then
    assert status == StripeEventStatus.PROCESSED
    event.refresh_from_db()
    method.refresh_from_db()
    assert (event.status, event.error, event.attempts) == (StripeEventStatus.PROCESSED, "", 2)
    assert method.removed_at is not None
    assert AuditEvent.objects.filter(action="stripe_event.retried", actor=staff).exists()


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("setup_intent.succeeded", {"id": "seti_outage", "object": "setup_intent"}),
        ("payment_intent.succeeded", {"id": "pi_outage", "object": "payment_intent"}),
        ("payment_method.detached", {"id": "pm_outage", "object": "payment_method"}),
    ],
)
def test_stripe_outage_while_processing_any_event_asks_the_task_to_retry(stripe_server, settings, event_type, obj):
    # given: an event stored from a delivery, and Stripe unreachable when the task processes it
    event = StripeEvent.objects.create(
        stripe_event_id=f"evt_outage_{event_type}",
        type=event_type,
        object_id=obj["id"],
        stripe_created=1,
        payload={"data": {"object": obj}},
    )
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"

    # when
    outcome = stripe_event_process(event_id=event.pk)

    # then: the task retries later (its own backoff) rather than leaving the event for staff to notice
    assert outcome == "retry"
    event.refresh_from_db()
    assert event.status == StripeEventStatus.FAILED and event.error


# --- Real deliveries: localstripe signs and POSTs events to our live server ----------------------------------------


def _wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the webhook")


def test_stripe_webhook_delivered_by_localstripe_for_successful_charge(live_server, stripe_server):
    customer = CustomerFactory()
    stripe_server.register_webhook(
        url=live_server.url + URL, events=["payment_intent.succeeded", "payment_intent.payment_failed"]
    )
    save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer)

    payment = payments.invoice_collect(invoice_id=invoice.pk)

    # (filtered by intent: a delivery scheduled by an earlier test may still arrive at the shared live server)
    event = _wait_for(
        lambda: StripeEvent.objects.filter(
            type="payment_intent.succeeded", object_id=payment.stripe_payment_intent_id
        ).first()
    )
    assert _wait_for(lambda: StripeEvent.objects.filter(pk=event.pk, status=StripeEventStatus.PROCESSED).exists())
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.amount_paid_minor == payment.amount_minor
    assert Payment.objects.filter(invoice=invoice).count() == 1


def test_stripe_webhook_delivered_by_localstripe_for_declined_charge(live_server, stripe_server):
    customer = CustomerFactory()
    stripe_server.register_webhook(url=live_server.url + URL, events=["payment_intent.payment_failed"])
    save_card(stripe_server, customer=customer, number=CARD_DECLINED_ON_CHARGE)
    invoice = open_invoice(customer=customer)

    payment = payments.invoice_collect(invoice_id=invoice.pk)

    stripe_customer_id = customer.stripe_link.stripe_customer_id
    event = _wait_for(
        lambda: (
            StripeEvent.objects.filter(
                type="payment_intent.payment_failed", payload__data__object__customer=stripe_customer_id
            )
            .exclude(status=StripeEventStatus.PENDING)
            .first()
        )
    )
    assert json.loads(json.dumps(event.payload))["data"]["object"]["status"] == "requires_payment_method"
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED and invoice.status == InvoiceStatus.OPEN
