"""Dunning's two status changes: a failed payment makes a subscription past due, a paid invoice restores it."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from subscriptions.models import Subscription, SubscriptionStatus, User
from subscriptions.services.lifecycle.transition import lock_subscription, status_transition


def subscription_mark_past_due(
    *, subscription_id: int, actor: User | None = None, reason: str = "", at: datetime | None = None
) -> Subscription:
    """Dunning: a payment failed. active → past_due; a subscription already past due is left as it is."""
    return _move_unless_there(subscription_id, SubscriptionStatus.PAST_DUE, actor=actor, reason=reason, at=at)


def subscription_restore(
    *, subscription_id: int, actor: User | None = None, reason: str = "", at: datetime | None = None
) -> Subscription:
    """Dunning: the overdue invoice was paid. past_due → active; an active subscription is left as it is."""
    return _move_unless_there(subscription_id, SubscriptionStatus.ACTIVE, actor=actor, reason=reason, at=at)


def _move_unless_there(
    subscription_id: int, to_status: str, *, actor: User | None, reason: str, at: datetime | None
) -> Subscription:
    at = at or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        if subscription.status != to_status:
            status_transition(subscription, to_status, actor=actor, actor_kind=None, reason=reason, at=at)
    return subscription
