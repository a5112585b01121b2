"""The subscription status table (SUBSCRIPTION_TRANSITIONS): the one place a subscription's status changes.

The row is locked, the table checked, the timestamps set, an audit row written and an entitlements reconcile
queued after commit. Forbidden transitions raise `InvalidTransition` and write nothing.
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from subscriptions.exceptions import InvalidTransition, SubscriptionNotChangeable
from subscriptions.models import SUBSCRIPTION_TRANSITIONS, Subscription, SubscriptionStatus, User
from subscriptions.services.audit import audit_record
from subscriptions.services.events import subscription_event_record
from subscriptions.services.provisioning import entitlements_reconcile_enqueue


def lock_subscription(subscription_id: int) -> Subscription:
    try:
        return (
            Subscription.objects.select_for_update(of=("self",))
            .select_related("customer", "package")
            .get(pk=subscription_id)
        )
    except Subscription.DoesNotExist:
        raise SubscriptionNotChangeable("That subscription does not exist.", field="subscription")


def _status_label(status: str) -> str:
    return SubscriptionStatus(status).label.lower()


def status_transition(
    subscription: Subscription,
    to_status: str,
    *,
    actor: User | None,
    actor_kind: str | None,
    reason: str,
    at: datetime,
) -> None:
    """Change the status of an already locked subscription (caller owns the transaction and saves)."""
    from_status = subscription.status
    if to_status not in SubscriptionStatus.values:
        raise InvalidTransition(f"“{to_status}” is not a subscription status.", field="status")
    if to_status not in SUBSCRIPTION_TRANSITIONS[from_status]:
        raise InvalidTransition(
            f"A {_status_label(from_status)} subscription cannot become {_status_label(to_status)}.", field="status"
        )
    subscription.status = to_status
    if to_status == SubscriptionStatus.CANCELED:
        subscription.canceled_at = at
    elif to_status == SubscriptionStatus.ENDED:
        subscription.ended_at = at
    elif to_status == SubscriptionStatus.ACTIVE and from_status == SubscriptionStatus.TRIALING:
        subscription.trial_end = subscription.trial_end or at
    subscription.version += 1
    subscription.save()
    audit_record(
        customer=subscription.customer,
        actor=actor,
        actor_kind=actor_kind,
        action="subscription.status_changed",
        obj=subscription,
        summary=f"Subscription {_status_label(from_status)} → {_status_label(to_status)}",
        before={"status": from_status},
        after={"status": to_status},
        reason=reason,
    )
    subscription_event_record(subscription, change=to_status if to_status in ("canceled", "ended") else "status")
    entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger=f"subscription.{to_status}")


def subscription_transition(
    *,
    subscription_id: int,
    to_status: str,
    actor: User | None = None,
    actor_kind: str | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> Subscription:
    """Move a subscription to `to_status` if `SUBSCRIPTION_TRANSITIONS` allows it (locks the row, audits)."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        status_transition(subscription, to_status, actor=actor, actor_kind=actor_kind, reason=reason, at=at)
    return subscription
