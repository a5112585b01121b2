"""Collecting money for invoices: manual (bank transfer) payments, and cards through Stripe.

Backends (docs/payments.md): `manual` is the zero-setup default; `stripe` is on when settings.STRIPE_SECRET_KEY is
set. Only billing.stripe_client talks to Stripe; this module decides what to ask and records what happened.

Guarantees:
- never charge an invoice twice: every attempt is a Payment row, unique per (invoice, attempt), written and
  committed BEFORE Stripe is called; the Stripe idempotency key is derived from the same pair, so a retried request
  (a crashed worker, a duplicate task) returns the first result instead of charging again;
- a payment is applied to its invoice exactly once (`Payment.applied_at`, set under a row lock);
- Stripe's answer is never trusted from event order: `payment_sync_from_stripe` fetches the PaymentIntent's
  current state and moves the Payment only along PAYMENT_TRANSITIONS.

One module per use case, bottom up (each imports only the ones before it): `cards` (saved cards),
`collection` (attempts and their outcomes), `refunds`. The payment backend and the Stripe customer live one layer
lower, in billing.services.stripe_customers, because billing profiles need them. Everything public is re-exported
here, so `from billing.services.payments import ...` and `payments.<name>` keep working.
"""

from billing.models import Payment  # the model, as the module used to expose it (tests read payments.Payment)
from billing.services.payments.cards import (
    STRIPE_UNREACHABLE_CARD_SAVE,
    CardSetup,
    default_payment_method,
    payment_method_for,
    payment_method_mark_detached,
    payment_method_remove,
    payment_method_save_from_setup_intent,
    payment_method_set_default,
    payment_method_setup_start,
)
from billing.services.payments.collection import (
    IN_FLIGHT_STATUSES,
    PaymentListener,
    PayNowResult,
    _start_attempt,
    invoice_collect,
    invoice_pay_now,
    invoice_payment_collect,
    money,
    payment_mark_disputed,
    payment_outcome_listen,
    payment_record_manual,
    payment_resume,
    payment_sync_from_stripe,
)
from billing.services.payments.refunds import (
    credit_note_refund,
    credit_note_refund_awaits_card,
    credit_note_refund_enqueue,
    credit_note_refund_record_manual,
    refund_sync_from_charge,
)
from billing.services.stripe_customers import (
    BACKEND_MANUAL,
    BACKEND_STRIPE,
    payment_backend,
    stripe_customer_ensure,
    stripe_customer_sync,
    stripe_customer_sync_enqueue,
)

__all__ = [
    "Payment",
    "BACKEND_MANUAL",
    "BACKEND_STRIPE",
    "CardSetup",
    "IN_FLIGHT_STATUSES",
    "PayNowResult",
    "PaymentListener",
    "STRIPE_UNREACHABLE_CARD_SAVE",
    "_start_attempt",
    "credit_note_refund",
    "credit_note_refund_awaits_card",
    "credit_note_refund_enqueue",
    "credit_note_refund_record_manual",
    "default_payment_method",
    "invoice_collect",
    "invoice_pay_now",
    "invoice_payment_collect",
    "money",
    "payment_backend",
    "payment_mark_disputed",
    "payment_method_for",
    "payment_method_mark_detached",
    "payment_method_remove",
    "payment_method_save_from_setup_intent",
    "payment_method_set_default",
    "payment_method_setup_start",
    "payment_outcome_listen",
    "payment_record_manual",
    "payment_resume",
    "payment_sync_from_stripe",
    "refund_sync_from_charge",
    "stripe_customer_ensure",
    "stripe_customer_sync",
    "stripe_customer_sync_enqueue",
]
