"""Renew one subscription: roll it over every period boundary that has passed (renewal.py holds the rules)."""

from datetime import datetime

from django.db import transaction
from django.db.models import Prefetch, prefetch_related_objects
from django.utils import timezone

from subscriptions.models import PackageComponent, Subscription, SubscriptionStatus
from subscriptions.services.events import subscription_event_record
from subscriptions.services.lifecycle.renewal import RenewalResult, renewal_close, renewal_roll_over
from subscriptions.services.lifecycle.scheduled import apply_due_scheduled, cancel_all_scheduled
from subscriptions.services.lifecycle.transition import lock_subscription, status_transition
from subscriptions.services.provisioning import entitlements_reconcile_enqueue
from subscriptions.services.terms import Terms, terms_current


def components_with_sku(lookup: str) -> Prefetch:
    return Prefetch(lookup, queryset=PackageComponent.objects.select_related("sku"))


class _WrittenAtOnce:
    """subscription_renew's steps: each is written as it happens, under the caller's row lock."""

    def __init__(self, as_of: datetime) -> None:
        self.as_of = as_of

    def end(self, subscription: Subscription, *, at: datetime, cancel_first: bool) -> None:
        reason = "period over"
        if cancel_first:
            reason = subscription.cancel_reason or "canceled at period end"
            status_transition(
                subscription, SubscriptionStatus.CANCELED, actor=None, actor_kind=None, reason=reason, at=at
            )
            cancel_all_scheduled(subscription, self.as_of)
        status_transition(subscription, SubscriptionStatus.ENDED, actor=None, actor_kind=None, reason=reason, at=at)

    def apply_scheduled(self, subscription: Subscription, *, boundary: datetime) -> list[int]:
        return apply_due_scheduled(subscription, boundary=boundary, as_of=self.as_of)

    def end_trial(self, subscription: Subscription, *, at: datetime) -> None:
        status_transition(
            subscription, SubscriptionStatus.ACTIVE, actor=None, actor_kind=None, reason="trial ended", at=at
        )

    def period_moved(self, subscription: Subscription) -> None:
        subscription.save()

    def terms(self, subscription: Subscription) -> Terms:
        return terms_current(subscription)


def subscription_renew(*, subscription_id: int, as_of: datetime | None = None) -> RenewalResult | None:
    """Roll the subscription over every period boundary at or before `as_of`. Idempotent.

    Returns None (and writes nothing) when the current period has not ended yet, or the subscription has ended.
    At each boundary, in order: a subscription set to cancel at period end goes canceled → ended (and stops);
    an immediately canceled one ends; due scheduled changes apply (seat decreases — never below the seats then
    assigned — downgrades, add-on removals); a trial becomes active; the next period starts. Locks the row.
    """
    as_of = as_of or timezone.now()
    with transaction.atomic():
        subscription = lock_subscription(subscription_id)
        if subscription.status == SubscriptionStatus.ENDED or subscription.current_period_end > as_of:
            return None
        # terms_lines reads the package's components and their SKUs for every period: one query, not one per line.
        prefetch_related_objects([subscription], components_with_sku("package__components"))
        start_version = subscription.version
        rollover = renewal_roll_over(subscription, as_of=as_of, steps=_WrittenAtOnce(as_of))
        result, audit = renewal_close(subscription, rollover, start_version=start_version)
        if audit is not None:
            subscription.save(update_fields=["version", "updated_at"])
            audit.save(force_insert=True)
            subscription_event_record(subscription, change="renewal")
            if rollover.applied:
                # Only a scheduled change alters what the customer is entitled to; a status change (trial over,
                # cancellation) has already queued its own reconcile in status_transition. Moving the period does not.
                entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger="subscription.renewed")
        return result


def subscriptions_due_for_renewal(*, as_of: datetime | None = None) -> list[int]:
    """Ids of subscriptions whose period ended at or before `as_of` and that are not ended (for the billing run)."""
    as_of = as_of or timezone.now()
    return list(
        Subscription.objects.filter(current_period_end__lte=as_of)
        .exclude(status=SubscriptionStatus.ENDED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
