"""Extending a trial: a staff action on the customer's behalf (support gives a prospect more time to evaluate)."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from subscriptions.exceptions import InvalidTransition, SubscriptionNotChangeable, TrialExtensionInvalid
from subscriptions.models import ActorKind, ScheduledChange, Subscription, SubscriptionStatus, User
from subscriptions.services.audit import audit_record
from subscriptions.services.provisioning import entitlements_reconcile_enqueue

MAX_EXTENSION_DAYS = 90


def subscription_extend_trial(
    *, subscription_id: int, days: int, actor: User, reason: str, at: datetime | None = None
) -> Subscription:
    """Push a trialing subscription's trial end (= its current period end) `days` later.

    Locks the subscription, requires a reason (kept in the audit trail), moves scheduled changes that were due at
    the old trial end to the new one, bumps the version (so an open preview becomes stale) and queues an
    entitlements reconcile after commit. Nothing is charged: a trial is free.
    """
    at = at or timezone.now()
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise TrialExtensionInvalid(f"Extend a trial by 1 to {MAX_EXTENSION_DAYS} days.", field="days")
    reason = (reason or "").strip()
    if not reason:
        raise TrialExtensionInvalid("Say why the trial is extended; the reason is kept in the audit trail.")
    with transaction.atomic():
        try:
            subscription = (
                Subscription.objects.select_for_update(of=("self",))
                .select_related("customer", "package")
                .get(pk=subscription_id)
            )
        except Subscription.DoesNotExist:
            raise SubscriptionNotChangeable("That subscription does not exist.", field="subscription")
        if subscription.status != SubscriptionStatus.TRIALING:
            raise InvalidTransition(
                f"Only a trial can be extended; this subscription is {subscription.get_status_display().lower()}."
            )
        if subscription.current_period_end <= at:
            raise TrialExtensionInvalid("This trial has already ended; it is being converted right now.")
        old_end = subscription.current_period_end
        new_end = old_end + timedelta(days=days)
        ScheduledChange.objects.filter(
            subscription=subscription, effective_at=old_end, applied_at__isnull=True, canceled_at__isnull=True
        ).update(effective_at=new_end)
        subscription.trial_end = new_end
        subscription.current_period_end = new_end
        subscription.billing_anchor = new_end  # the paid periods start when the trial ends
        subscription.version += 1
        subscription.save(update_fields=["trial_end", "current_period_end", "billing_anchor", "version", "updated_at"])
        audit_record(
            customer=subscription.customer,
            actor=actor,
            actor_kind=ActorKind.STAFF,
            action="subscription.trial_extended",
            obj=subscription,
            summary=f"Trial of {subscription.package.name} extended by {days} days to {new_end:%Y-%m-%d}",
            before={"trial_end": old_end.isoformat()},
            after={"trial_end": new_end.isoformat(), "version": subscription.version},
            reason=reason,
        )
        entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger="subscription.trial_extended")
    return subscription
