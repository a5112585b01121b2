"""Card customers of the simulated year, paying through the real Stripe path against localstripe.

A share of the customers (`--card-customers`, default 15 % of the base) saves a card right after sign-up, the way
the payment-methods page does it: `payment_method_setup_start`, then what Stripe.js `confirmCardSetup` does (here:
`_confirm_card_setup`, against localstripe on 127.0.0.1), then `payment_method_save_from_setup_intent`. From then on
their invoices are collected off-session by the after-issue task (`invoice_payment_collect`), as in production.

- **Card failures, dunning and recovery.** 30 % of card customers save a card that attaches but is declined when
  charged (localstripe's 4000000000000341). The failure opens a dunning case (billing.services.dunning: e-mail,
  retries on days 1, 3, 5, 7, past due after the grace days, uncollectible after the last retry). 80 % of them add a
  working card 1–6 days later and make it the default; half of those pay the open invoices at once (`invoice_pay_now`),
  the others wait for the next dunning retry. The rest never fix their card and pay by bank transfer 8–20 days after
  the failure (`payment_record_manual`, which closes the case).
- **Refunds by card.** 30 % of card customers report a problem on a card-paid invoice (goodwill or service issue):
  a credit note, whose refund the credit-note service starts through Stripe (`credit_note_refund`).
- **Webhooks twice and out of order.** Every hour, the Stripe events of what happened since the last delivery
  (`payment_intent.succeeded` / `payment_intent.payment_failed` built from localstripe's own PaymentIntent, and
  `charge.refunded` from its Charge) are fed to the webhook service (`stripe_event_store`, which queues
  `stripe_event_process`) newest first, then all of them a second time in order.

The invariants (`card_violations`) check on the database and on localstripe: a card payment is applied at most once
and only when it succeeded; an invoice's paid amount is its applied payments; at most one refund per credit note, and
the refunds of a charge are what Stripe says it refunded (no refund counted twice, none recorded as made outside
Continuum); every delivered event is stored once and processed or ignored, never failed; every dunning case of a paid
invoice is recovered.

localstripe is started by the command (`localstripe_start`), or `--localstripe URL` points at a running one. When
it cannot be started the run stops with `LocalStripeUnavailable` saying so; `--card-customers 0` runs without cards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from billing.exceptions import BillingError
from billing.models import (
    DunningCase,
    DunningStage,
    ExternalRefund,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    StripeEvent,
    StripeEventStatus,
)
from billing.services.credit_notes import credit_note_create
from billing.services.payments import (
    invoice_pay_now,
    payment_method_save_from_setup_intent,
    payment_method_set_default,
    payment_method_setup_start,
    payment_record_manual,
)
from billing.services.stripe_events import stripe_event_store
from subscriptions.models import User

SECRET_KEY = "sk_test_continuum_simulation"
PUBLISHABLE_KEY = "pk_test_continuum_simulation"
CARD_OK = "4242424242424242"
CARD_DECLINED_ON_CHARGE = "4000000000000341"  # attaches, then every charge is declined
CARD_SHARE = 0.15
DECLINING_SHARE = 0.30
FIX_RATE = 0.80
PAY_NOW_SHARE = 0.50
REFUND_SHARE = 0.30
CARD_KINDS = ("us_taxed", "us_untaxed", "eu_vat", "eu_no_vat", "us_exempt")


class LocalStripeUnavailable(RuntimeError):
    """The simulation has card customers but localstripe could not be started or reached."""


@dataclass
class LocalStripe:
    url: str
    process: subprocess.Popen | None = None

    def request(self, path: str, data: dict | None = None, *, key: str = SECRET_KEY, method: str = "GET") -> dict:
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.url + path,
            data=body,
            method=method if data is None else "POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - 127.0.0.1 only
            raw = response.read()
        return json.loads(raw) if raw.strip() else {}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def localstripe_start(url: str = "") -> LocalStripe:
    """A localstripe answering on 127.0.0.1: the one at `url`, or a fresh one started on a free port (stopped with
    `LocalStripe.stop`). Raises LocalStripeUnavailable, with the reason, when there is none."""
    if url:
        server = LocalStripe(url=url.rstrip("/"))
        try:
            server.request("/v1/customers")
        except (urllib.error.URLError, OSError) as error:
            raise LocalStripeUnavailable(f"localstripe does not answer at {url}: {error}") from error
        return server
    workdir = Path(tempfile.mkdtemp(prefix="sim-localstripe-"))
    port_file, log_path = workdir / "port", workdir / "localstripe.log"
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "portal.simulation.localstripe_server",
                    "--port",
                    "0",
                    "--port-file",
                    str(port_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            )
        except OSError as error:
            raise LocalStripeUnavailable(f"localstripe could not be started: {error}") from error
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LocalStripeUnavailable(
                f"localstripe exited with code {process.returncode}: {log_path.read_text(errors='replace')[-800:]}"
            )
        if port_file.exists():
            server = LocalStripe(url=f"http://127.0.0.1:{port_file.read_text().strip()}", process=process)
            try:
                server.request("/v1/customers")
                return server
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.1)
    process.kill()
    raise LocalStripeUnavailable(f"localstripe did not answer within 30 s (log: {log_path})")


def stripe_settings(server: LocalStripe) -> dict:
    """The settings that point Continuum's Stripe client at `server` (for override_settings)."""
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "STRIPE_WEBHOOK_SECRET": "whsec_continuum_simulation",
        "STRIPE_API_BASE": server.url,
    }


@dataclass
class CardStats:
    customers: int = 0
    counts: Counter = field(default_factory=Counter)


class CardDesk:
    """What card customers and Stripe do during the simulated year (see the module docstring)."""

    def __init__(self, simulation, *, server: LocalStripe, card_customers: int):
        self.sim = simulation
        self.server = server
        self.stats = CardStats()
        eligible = [c for c in simulation.customers if c.kind in CARD_KINDS]
        chosen = simulation.rng.sample(eligible, min(card_customers, len(eligible)))
        self.by_customer_index = {c.index: c for c in chosen}
        self.declining: set[int] = set()  # sim customer index -> card is declined when charged
        self.never_fix: set[int] = set()
        self.will_refund: set[int] = set()
        for c in chosen:
            if simulation.rng.random() < DECLINING_SHARE:
                self.declining.add(c.index)
                if simulation.rng.random() >= FIX_RATE:
                    self.never_fix.add(c.index)
            if simulation.rng.random() < REFUND_SHARE:
                self.will_refund.add(c.index)
        self.stats.customers = len(chosen)
        self.customer_ids: set[int] = set()
        self._index_of: dict[int, int] = {}
        self._seen_payments: dict[int, str] = {}  # payment id -> status already reported by an event
        self._last_payment_id = 0
        self._in_flight: set[int] = set()
        self._last_refund_id = 0
        self._handled_failures: set[int] = set()
        self._fix_scheduled: set[int] = set()
        self._events: list[dict] = []
        self._event_seq = 0

    # -- sign-up: the payment-methods page ------------------------------------------------------------------------
    def after_signup(self, c) -> None:
        if c.index not in self.by_customer_index:
            return
        self.customer_ids.add(c.customer_id)
        self._index_of[c.customer_id] = c.index
        number = CARD_DECLINED_ON_CHARGE if c.index in self.declining else CARD_OK
        self._save_card(c, number)
        self.stats.counts["cards saved"] += 1

    def pays_by_card(self, customer_id: int) -> bool:
        return customer_id in self.customer_ids

    def _save_card(self, c, number: str) -> PaymentMethod:
        setup = payment_method_setup_start(customer_id=c.customer_id, actor=self._owner(c))
        self._confirm_card_setup(setup.client_secret, number)
        return payment_method_save_from_setup_intent(
            setup_intent_id=setup.setup_intent_id, customer_id=c.customer_id, actor=self._owner(c)
        )

    def _owner(self, c):
        return User.objects.get(pk=c.owner_id)

    def _confirm_card_setup(self, client_secret: str, number: str) -> None:
        """What Stripe.js `confirmCardSetup` does in the browser (publishable key), and, as real Stripe does when a
        SetupIntent with a customer succeeds, the card's attachment to that customer (localstripe skips it)."""
        setup_intent_id = client_secret.split("_secret_")[0]
        card = {"number": number, "exp_month": 12, "exp_year": datetime.now(UTC).year + 8, "cvc": "123"}
        intent = self.server.request(
            f"/v1/setup_intents/{setup_intent_id}/confirm",
            {
                "key": PUBLISHABLE_KEY,
                "client_secret": client_secret,
                "use_stripe_sdk": True,
                "payment_method_data": {"type": "card", "card": card},
            },
            key=PUBLISHABLE_KEY,
        )
        if intent.get("status") == "succeeded" and intent.get("customer"):
            self.server.request(
                f"/v1/payment_methods/{intent['payment_method']}/attach", {"customer": intent["customer"]}
            )

    # -- what happened since the last look ------------------------------------------------------------------------
    def scan(self) -> None:
        """After every billing run, review, dunning run and card action: follow up failures, refunds, and gather the
        Stripe events to deliver."""
        if not self.customer_ids:
            return
        # Only payments not seen yet, and those seen while still in flight (their outcome may have moved since).
        payments = Payment.objects.filter(kind=PaymentKind.CARD)
        payments = payments.filter(pk__gt=self._last_payment_id) | payments.filter(pk__in=self._in_flight)
        for payment in payments.order_by("pk"):
            self._last_payment_id = max(self._last_payment_id, payment.pk)
            if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED, PaymentStatus.CANCELED):
                self._in_flight.discard(payment.pk)
            else:
                self._in_flight.add(payment.pk)
            if self._seen_payments.get(payment.pk) == payment.status:
                continue
            self._seen_payments[payment.pk] = payment.status
            self.stats.counts[f"card payment {payment.status}"] += 1
            self._queue_intent_event(payment)
            if payment.status == PaymentStatus.FAILED and payment.pk not in self._handled_failures:
                self._handled_failures.add(payment.pk)
                self._after_failure(payment)
            if payment.status == PaymentStatus.SUCCEEDED:
                self._maybe_report_problem(payment)
        for refund in (
            Refund.objects.filter(pk__gt=self._last_refund_id).exclude(stripe_refund_id="").select_related("payment")
        ):
            self._last_refund_id = max(self._last_refund_id, refund.pk)
            self.stats.counts[f"card refund {refund.status}"] += 1
            self._queue_charge_refunded(refund.payment.stripe_charge_id)

    def after_issue(self, invoice: Invoice) -> bool:
        """A newly issued invoice: True when it is a card customer's (collected by card, not by bank transfer). One
        issued before the card was saved, and so never charged, the customer pays on the pay-now page."""
        if invoice.customer_id not in self.customer_ids:
            return False
        if (
            invoice.status == InvoiceStatus.OPEN
            and invoice.amount_due_minor > 0
            and not Payment.objects.filter(invoice=invoice, kind=PaymentKind.CARD).exists()
        ):
            self._pay_now(invoice)
        return True

    def _after_failure(self, payment: Payment) -> None:
        index = self._index_of[payment.customer_id]
        c = self.by_customer_index[index]
        if index in self.never_fix:
            when = self.sim.now + timedelta(days=self.sim.rng.randint(8, 20), hours=self.sim.rng.randint(1, 8))
            self.sim.at(when, self.bank_transfer, payment.invoice_id)
        elif index not in self._fix_scheduled:
            self._fix_scheduled.add(index)
            when = self.sim.now + timedelta(days=self.sim.rng.randint(1, 6), hours=self.sim.rng.randint(1, 10))
            self.sim.at(when, self.replace_card, c)

    def replace_card(self, c) -> None:
        """The customer adds a working card after the dunning e-mail and makes it the default."""
        method = self._save_card(c, CARD_OK)
        payment_method_set_default(customer_id=c.customer_id, payment_method_id=method.pk, actor=self._owner(c))
        self.declining.discard(c.index)
        self.stats.counts["card replaced after a failure"] += 1
        if self.sim.rng.random() < PAY_NOW_SHARE:
            for invoice in Invoice.objects.filter(
                customer_id=c.customer_id,
                status__in=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
                amount_due_minor__gt=0,
            ):
                self._pay_now(invoice)
        self.sim._dirty = True
        self.scan()

    def _pay_now(self, invoice: Invoice) -> None:
        method = PaymentMethod.objects.filter(
            customer_id=invoice.customer_id, is_default=True, removed_at__isnull=True
        ).first()
        if method is None:
            return
        index = self._index_of[invoice.customer_id]
        try:
            invoice_pay_now(
                invoice_id=invoice.pk,
                customer_id=invoice.customer_id,
                payment_method_id=method.pk,
                actor=self._owner(self.by_customer_index[index]),
            )
            self.stats.counts["paid now by card"] += 1
        except BillingError as refusal:  # declined: the customer sees it on the page
            self.stats.counts[f"pay now refused: {type(refusal).__name__}"] += 1

    def bank_transfer(self, invoice_id: int) -> None:
        invoice = Invoice.objects.get(pk=invoice_id)
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.amount_due_minor <= 0:
            return
        payment_record_manual(
            invoice_id=invoice.pk,
            amount_minor=invoice.amount_due_minor,
            reference=f"Bank transfer {invoice.number} (card declined)",
            actor=self.sim.clerk,
        )
        self.stats.counts["paid by transfer after a card failure"] += 1
        self.sim._dirty = True

    def _maybe_report_problem(self, payment: Payment) -> None:
        index = self._index_of[payment.customer_id]
        if index not in self.will_refund:
            return
        self.will_refund.discard(index)  # once per customer
        when = self.sim.now + timedelta(days=self.sim.rng.randint(2, 15), hours=self.sim.rng.randint(1, 8))
        self.sim.at(when, self.refund, payment.invoice_id)

    def refund(self, invoice_id: int) -> None:
        """A customer-reported problem on a card-paid invoice: a partial credit note, refunded to the card."""
        invoice = Invoice.objects.prefetch_related("lines").get(pk=invoice_id)
        line = next((line for line in invoice.lines.all() if line.amount_minor > 0), None)
        if line is None or invoice.status != InvoiceStatus.PAID:
            return
        reason = self.sim.rng.choice(["goodwill", "service_issue"])
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code=reason,
            reason_text="Simulated: customer-reported, refunded to the card",
            lines=[{"invoice_line_id": line.pk, "amount_minor": max(1, line.amount_minor // 5)}],
            actor=self.sim.clerk,
        )
        self.sim.stats.corrections[reason] += 1
        self.stats.counts["credit notes on card-paid invoices"] += 1
        self.scan()

    # -- Stripe's webhooks ----------------------------------------------------------------------------------------
    def _event(self, event_type: str, obj: dict) -> dict:
        self._event_seq += 1
        return {
            "id": f"evt_sim_{self._event_seq:07d}",
            "object": "event",
            "type": event_type,
            "created": int(self.sim.now.timestamp()),
            "api_version": "2024-06-20",
            "data": {"object": obj},
        }

    def _queue_intent_event(self, payment: Payment) -> None:
        if not payment.stripe_payment_intent_id:
            return  # declined before Stripe returned an intent id (localstripe): no event to send
        intent = self.server.request(f"/v1/payment_intents/{payment.stripe_payment_intent_id}")
        kind = {
            PaymentStatus.SUCCEEDED: "payment_intent.succeeded",
            PaymentStatus.FAILED: "payment_intent.payment_failed",
        }.get(payment.status)
        if kind:
            self._events.append(self._event(kind, intent))

    def _queue_charge_refunded(self, charge_id: str) -> None:
        if charge_id:
            self._events.append(self._event("charge.refunded", self.server.request(f"/v1/charges/{charge_id}")))

    def deliver(self) -> None:
        """Deliver the gathered events to the webhook service: newest first, then every one a second time."""
        if not self._events:
            return
        events, self._events = self._events, []
        for event in [*reversed(events), *events]:
            _, created = stripe_event_store(event=event)
            self.stats.counts["webhook deliveries"] += 1
            if not created:
                self.stats.counts["webhook duplicates ignored"] += 1
        self.sim._dirty = True

    def summary(self) -> dict:
        return {"customers": self.stats.customers, "url": self.server.url, **dict(self.stats.counts.most_common())}


def card_violations(violation, server: LocalStripe | None) -> list:
    """The card invariants (module docstring); `violation(invariant, subject, facts)` builds one."""
    found = []
    applied = defaultdict(int)
    for payment in Payment.objects.all():
        subject = f"payment {payment.pk} (invoice {payment.invoice_id}, attempt {payment.attempt})"
        if payment.applied_at is not None and payment.status != PaymentStatus.SUCCEEDED:
            found.append(violation("money", subject, f"applied although {payment.status}"))
        if payment.applied_at is not None:
            applied[payment.invoice_id] += payment.amount_minor
    card_invoices = set(Payment.objects.values_list("invoice_id", flat=True))
    for invoice in Invoice.objects.filter(pk__in=card_invoices):
        if invoice.amount_paid_minor != applied[invoice.pk]:
            found.append(
                violation(
                    "money",
                    f"invoice {invoice.number}",
                    f"paid {invoice.amount_paid_minor} ≠ applied payments {applied[invoice.pk]} (a payment counted "
                    "twice or lost)",
                )
            )
    per_note = Counter(Refund.objects.values_list("credit_note_id", flat=True))
    for note_id, count in per_note.items():
        if count > 1:
            found.append(violation("money", f"credit note {note_id}", f"refunded {count} times"))
    for refund in Refund.objects.select_related("credit_note", "payment"):
        note = refund.credit_note
        if refund.status == RefundStatus.SUCCEEDED and refund.amount_minor > note.refund_due_minor:
            found.append(
                violation(
                    "money",
                    f"credit note {note.number}",
                    f"refunded {refund.amount_minor} > due {note.refund_due_minor}",
                )
            )
        if refund.payment.invoice_id != note.invoice_id:
            found.append(violation("money", f"credit note {note.number}", "refunded to another invoice's payment"))
    for external in ExternalRefund.objects.all():
        found.append(
            violation("money", f"payment {external.payment_id}", f"our refund recorded as external: {external}")
        )
    if server is not None:
        charges = defaultdict(int)
        for charge_id, amount in Refund.objects.filter(status=RefundStatus.SUCCEEDED).values_list(
            "payment__stripe_charge_id", "amount_minor"
        ):
            charges[charge_id] += amount
        for charge_id, ours in charges.items():
            at_stripe = server.request(f"/v1/charges/{charge_id}").get("amount_refunded", 0)
            if at_stripe != ours:
                found.append(violation("money", f"charge {charge_id}", f"refunded {ours} here, {at_stripe} at Stripe"))
    for event in StripeEvent.objects.exclude(status__in=(StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED)):
        found.append(
            violation("money", f"Stripe event {event.stripe_event_id} ({event.type})", f"{event.status}: {event.error}")
        )
    for case in DunningCase.objects.select_related("invoice").filter(invoice__status=InvoiceStatus.PAID):
        if case.stage != DunningStage.RECOVERED:
            found.append(violation("money", f"dunning case of {case.invoice.number}", f"paid but {case.stage}"))
    return found
