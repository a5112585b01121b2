"""Stripe webhook events: store once, process in a task, record the outcome, retry from admin.

Processing never trusts the order in which Stripe delivers events (it does not guarantee one): each handler acts on
the object's CURRENT state — it fetches the PaymentIntent / SetupIntent / PaymentMethod from Stripe, or applies a
value that only grows (amount refunded) — and our own rows only move forward along their transition tables.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import stripe_client
from billing.exceptions import BillingError, NotFound, PaymentProviderUnavailable
from billing.models import StripeEvent, StripeEventStatus
from billing.services import payments
from billing.services.transitions import transition_allowed, transition_set
from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models import User
from subscriptions.services.audit import audit_record
from subscriptions.transient import is_transient

logger = logging.getLogger(__name__)

HANDLED_TYPES = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.processing",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "setup_intent.succeeded",
        "payment_method.detached",
        "charge.refunded",
        "charge.dispute.created",
    }
)


def stripe_event_store(*, event: dict) -> tuple[StripeEvent, bool]:
    """Store a verified event. Returns (event, created); a redelivery of the same Stripe id returns (existing, False)
    and changes nothing. Queues processing after commit."""
    obj = (event.get("data") or {}).get("object") or {}
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(
                stripe_event_id=str(event["id"]),
                type=str(event.get("type", "")),
                object_id=str(obj.get("id", ""))[:100],
                stripe_created=int(event.get("created") or 0),
                payload=event,
            )
            transaction.on_commit(lambda: _enqueue(stored.pk))
    except IntegrityError:
        return StripeEvent.objects.get(stripe_event_id=str(event["id"])), False
    return stored, True


def _enqueue(event_id: int) -> None:
    try:
        # Publishing retries a broker blip (CELERY_TASK_PUBLISH_RETRY_POLICY); should it outlast those retries the
        # event stays pending and billing.stripe_events_sweep queues it again.
        enqueue_on_commit("billing.stripe_event_process", event_id=event_id)
    except Exception:
        # The event is stored: our answer to Stripe must not depend on processing (with eager tasks in development
        # a processing retry surfaces here). The event keeps its status and error and can be retried from admin.
        logger.exception("stripe event %s: processing did not complete", event_id)


def stripe_event_process(*, event_id: int) -> str:
    """Process a stored event once. Returns its new status, or "retry" when Stripe could not be reached (the task
    retries later). Already processed or ignored events are left alone, so a duplicate task is harmless."""
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event_id)
        if event.status in (StripeEventStatus.PROCESSED, StripeEventStatus.IGNORED):
            return event.status
        event.attempts += 1
        event.save(update_fields=["attempts"])
    status, error, transient = StripeEventStatus.PROCESSED, "", False
    try:
        handled = _dispatch(event)
        if not handled:
            status = StripeEventStatus.IGNORED
    except PaymentProviderUnavailable as exc:  # Stripe unreachable or refusing for now: worth another try
        status, error, transient = StripeEventStatus.FAILED, exc.message, True
    except BillingError as exc:
        status, error = StripeEventStatus.FAILED, f"{exc.code}: {exc.message}"
    except Exception as exc:  # recorded on the event for staff; the event can be retried from admin
        # A database lock or a dropped connection says nothing about the event: the task retries it with backoff.
        transient = is_transient(exc)
        logger.log(
            logging.WARNING if transient else logging.ERROR,
            "stripe event %s failed%s",
            event.stripe_event_id,
            " (transient, will retry)" if transient else "",
            exc_info=True,
        )
        status, error = StripeEventStatus.FAILED, f"{type(exc).__name__}: {exc}"
    with transaction.atomic():
        event = StripeEvent.objects.select_for_update().get(pk=event.pk)
        # A concurrent run may have processed the event meanwhile: its final status stands (STRIPE_EVENT_TRANSITIONS).
        if transition_allowed(event, status):
            transition_set(event, status)
            event.error = error[:2000]
            event.processed_at = timezone.now() if status != StripeEventStatus.FAILED else None
            event.save(update_fields=["status", "error", "processed_at"])
    if transient:
        return "retry"
    return status


def stripe_events_requeue_stale(*, older_than_seconds: int = 300, limit: int = 500) -> int:
    """Queue processing again for events still pending `older_than_seconds` after they arrived: their task was never
    published (a broker outage outlasted the publish retries) or was lost with a killed worker. Processing is
    idempotent (a processed event is left alone), so a duplicate is harmless. Returns how many were queued."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        StripeEvent.objects.filter(status=StripeEventStatus.PENDING, received_at__lt=cutoff)
        .order_by("received_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    for event_id in ids:
        _enqueue(event_id)
    return len(ids)


def _dispatch(event: StripeEvent) -> bool:
    """Run the handler for the event type; False when there was nothing for us to do."""
    obj = (event.payload.get("data") or {}).get("object") or {}
    kind = event.type
    if kind not in HANDLED_TYPES:
        return False
    if kind.startswith("payment_intent."):
        return payments.payment_sync_from_stripe(payment_intent_id=str(obj.get("id", ""))) is not None
    if kind == "setup_intent.succeeded":
        try:
            payments.payment_method_save_from_setup_intent(setup_intent_id=str(obj.get("id", "")))
        except NotFound:
            return False  # not one of our customers
        return True
    if kind == "payment_method.detached":
        pm_id = str(obj.get("id", ""))
        try:
            card = stripe_client.payment_method_retrieve(payment_method_id=pm_id)
        except stripe_client.StripeUnavailable as error:
            if error.code != "resource_missing":
                raise PaymentProviderUnavailable(f"Could not reach Stripe: {error.message}")
            card = None
        if card is not None and card.customer_id:
            return False  # attached again since this event was sent: current state wins
        return payments.payment_method_mark_detached(stripe_payment_method_id=pm_id)
    if kind == "charge.refunded":
        # Only the charge id is taken from the event; amounts come from Stripe's refund objects.
        refunds = payments.refund_sync_from_charge(stripe_charge_id=str(obj.get("id", "")))
        return bool(refunds) or payments.Payment.objects.filter(stripe_charge_id=str(obj.get("id", ""))).exists()
    if kind == "charge.dispute.created":
        payment = payments.payment_mark_disputed(
            stripe_charge_id=stripe_client_id(obj.get("charge")),
            payment_intent_id=stripe_client_id(obj.get("payment_intent")),
            reason=str(obj.get("reason") or ""),
        )
        return payment is not None
    return False


def stripe_client_id(value) -> str:
    if isinstance(value, dict):
        return str(value.get("id", ""))
    return str(value or "")


def stripe_event_retry(*, event_id: int, actor: User | None) -> str:
    """Billing staff retry a failed event (admin action). Processes it again now and returns the new status."""
    event = StripeEvent.objects.filter(pk=event_id).first()
    if event is None:
        raise NotFound("That Stripe event does not exist.")
    if event.status != StripeEventStatus.FAILED:
        raise BillingError(f"Only failed events can be retried; this one is {event.get_status_display().lower()}.")
    audit_record(
        customer=None,
        actor=actor,
        action="stripe_event.retried",
        obj=event,
        summary=f"Retried Stripe event {event.type} ({event.stripe_event_id})",
        before={"status": event.status, "error": event.error[:300]},
    )
    status = stripe_event_process(event_id=event.pk)
    return StripeEventStatus.FAILED if status == "retry" else status
