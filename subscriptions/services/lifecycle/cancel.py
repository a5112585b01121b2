"""Cancel a subscription immediately (staff, or the system after failed dunning)."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from subscriptions.models import SubscriptionChange, SubscriptionStatus, User
from subscriptions.money import format_date
from subscriptions.services.lifecycle.scheduled import cancel_all_scheduled
from subscriptions.services.lifecycle.transition import lock_subscription, status_transition


def subscription_cancel_now(
    *,
    subscription_id: int,
    actor: User | None,
    actor_kind: str | None = None,
    reason: str = "",
    at: datetime | None = None,
    idempotency_key: str | None = None,
) -> SubscriptionChange:
    """Cancel immediately (staff, or the system after failed dunning): access stops now, nothing is refunded.

    The subscription becomes canceled now and ended when renewal reaches its period end. Records a
    `SubscriptionChange` of kind "cancel" with no lines; the same idempotency key returns the first change.
    """
    at = at or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        if idempotency_key:
            existing = subscription.changes.filter(idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
        status_transition(
            subscription, SubscriptionStatus.CANCELED, actor=actor, actor_kind=actor_kind, reason=reason, at=at
        )
        subscription.cancel_reason = reason
        subscription.save(update_fields=["cancel_reason", "updated_at"])
        cancel_all_scheduled(subscription, at)
        summary = f"Subscription canceled on {format_date(at, subscription.customer.country)}"
        change = SubscriptionChange.objects.create(
            subscription=subscription,
            kind=SubscriptionChange.Kind.CANCEL,
            idempotency_key=idempotency_key or None,
            actor=actor,
            result={
                "kind": SubscriptionChange.Kind.CANCEL,
                "subscription_id": subscription.pk,
                "version": subscription.version,
                "currency": subscription.currency,
                "effective_at": at.isoformat(),
                "immediate": True,
                "lines": [],
                "amount_due_now_minor": 0,
                "next_recurring_amount_minor": 0,
                "summary": summary,
                "notes": [],
            },
            amount_due_now_minor=0,
            currency=subscription.currency,
            effective_at=at,
        )
    return change
