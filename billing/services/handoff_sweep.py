"""Redo the payment and export work whose after-commit hand-off to the broker was lost.

`enqueue_on_commit` never fails a committed request when the broker refuses a message (it logs and counts it); the
durable state the request left behind tells this sweep what never ran. Every few minutes (beat
`billing.lost_handoffs_sweep`, docs/operations.md) it queues again:

- `billing.credit_note_refund` for a credit note issued more than `grace` ago that gives money back to a card
  (`credit_note_refund_awaits_card`: something due back, Stripe on, a card payment still holding money) and has no
  Refund row yet — the task creates that row first thing, so its absence means the task never ran;
- `billing.stripe_customer_sync` for a Stripe-linked customer whose billing profile changed more than `grace` ago
  and was not pushed to Stripe since (`StripeCustomer.synced_at` older than `BillingProfile.updated_at`);
- `billing.accounting_export_build` for an export still `queued` more than `grace` after it was requested (the build
  marks it `running` first thing; running, done and failed exports are left alone).

Only the last `window` is looked at, so work that can never succeed is retried for a bounded time, not forever. The
grace period leaves work a worker is about to run alone. Every task queued here is idempotent: a refund is made at
most once per credit note (unique Refund row, Stripe idempotency key), a customer update to Stripe is the same
update twice, and a done export is left alone — so a late original message and the sweep's copy do the work once.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from billing.models import AccountingExport, CreditNote, ExportStatus, PaymentKind, PaymentStatus, StripeCustomer
from billing.services.payments import BACKEND_STRIPE, credit_note_refund_awaits_card, payment_backend
from subscriptions.dispatch import send_now

GRACE = timedelta(minutes=10)
WINDOW = timedelta(days=7)
LIMIT = 500


@dataclass(frozen=True)
class LostHandoffs:
    credit_note_refunds: list[int]
    stripe_customer_syncs: list[int]
    accounting_exports: list[int]


def _credit_notes_awaiting_card_refund(*, since, until) -> list[int]:
    if payment_backend() != BACKEND_STRIPE:
        return []
    candidates = (
        CreditNote.objects.filter(
            issued_at__gte=since,
            issued_at__lte=until,
            refund_due_minor__gt=0,
            refund__isnull=True,
            invoice__payments__kind=PaymentKind.CARD,
            invoice__payments__status=PaymentStatus.SUCCEEDED,
        )
        .distinct()
        .order_by("issued_at", "id")[:LIMIT]
    )
    return [note.pk for note in candidates if credit_note_refund_awaits_card(credit_note=note)]


def _customers_out_of_sync_with_stripe(*, since, until) -> list[int]:
    if payment_backend() != BACKEND_STRIPE:
        return []
    changed = F("customer__billing_profile__updated_at")
    return list(
        StripeCustomer.objects.filter(
            customer__billing_profile__updated_at__gte=since,
            customer__billing_profile__updated_at__lte=until,
        )
        .filter(Q(synced_at__isnull=True) | Q(synced_at__lt=changed))
        .order_by(changed, "id")
        .values_list("customer_id", flat=True)[:LIMIT]
    )


def _exports_never_started(*, since, until) -> list[int]:
    return list(
        AccountingExport.objects.filter(status=ExportStatus.QUEUED, created_at__gte=since, created_at__lte=until)
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:LIMIT]
    )


def lost_handoffs_sweep(*, grace: timedelta = GRACE, window: timedelta = WINDOW) -> LostHandoffs:
    """Queue again every refund, Stripe customer sync and accounting export whose hand-off was lost (see above)."""
    now = timezone.now()
    since, until = now - window, now - grace
    found = LostHandoffs(
        credit_note_refunds=_credit_notes_awaiting_card_refund(since=since, until=until),
        stripe_customer_syncs=_customers_out_of_sync_with_stripe(since=since, until=until),
        accounting_exports=_exports_never_started(since=since, until=until),
    )
    for credit_note_id in found.credit_note_refunds:
        send_now("billing.credit_note_refund", credit_note_id=credit_note_id)
    for customer_id in found.stripe_customer_syncs:
        send_now("billing.stripe_customer_sync", customer_id=customer_id)
    for export_id in found.accounting_exports:
        send_now("billing.accounting_export_build", export_id=export_id)
    return found
