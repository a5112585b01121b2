"""Renew many subscriptions at once (the billing run's path), with the rules of renewal.py and the outcome of
`subscription_renew` on each."""

import logging
from datetime import datetime

from django.db import transaction

from subscriptions import bulk
from subscriptions.models import (
    AuditEvent,
    Package,
    ScheduledChange,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.services.events import events_record_many, subscription_event
from subscriptions.services.lifecycle.renew import components_with_sku, subscription_renew
from subscriptions.services.lifecycle.renewal import (
    RenewalResult,
    is_plain_renewal,
    renewal_close,
    renewal_roll_over,
)
from subscriptions.services.terms import Terms, terms_from

logger = logging.getLogger(__name__)

# What a plain renewal reads and writes (loading only these makes the chunk's lock query cheaper; the
# per-subscription path locks and loads its rows itself).
_PLAIN_RENEWAL_FIELDS = (
    "customer",
    "customer__country",  # the renewal's audit summary and lines write dates as the customer does
    "package",
    "price",
    "interval",
    "currency",
    "flat_amount_minor",
    "seat_amount_minor",
    "included_seats",
    "status",
    "seats",
    "committed_seats",
    "current_period_start",
    "current_period_end",
    "billing_anchor",
    "cancel_at_period_end",
    "version",
    *("trial_end", "canceled_at", "ended_at"),  # for the subscription.updated event's snapshot
)


class _InMemory:
    """A plain renewal's steps (`is_plain_renewal`): only the period moves, on terms loaded once; the caller writes
    the rows in bulk afterwards. The other steps cannot happen on a plain renewal."""

    def __init__(self, terms: Terms) -> None:
        self._terms = terms

    def end(self, subscription: Subscription, *, at: datetime, cancel_first: bool) -> None:
        raise AssertionError(f"subscription {subscription.pk} is not a plain renewal: it ends")

    def apply_scheduled(self, subscription: Subscription, *, boundary: datetime) -> list[int]:
        return []  # a plain renewal has no pending scheduled change

    def end_trial(self, subscription: Subscription, *, at: datetime) -> None:
        raise AssertionError(f"subscription {subscription.pk} is not a plain renewal: its trial ends")

    def period_moved(self, subscription: Subscription) -> None:
        pass

    def terms(self, subscription: Subscription) -> Terms:
        return self._terms


def subscription_renew_batch(*, subscription_ids: list[int], as_of: datetime) -> list[RenewalResult]:
    """Renew many subscriptions (the billing run's path), with exactly the outcome of `subscription_renew` on each:
    the same periods, lines, row changes and audit rows. Returns the results of those that renewed, in id order.

    Locks every row of the batch with one SELECT … FOR UPDATE in primary-key order (so two runs queue rather than
    deadlock, and a run that waited sees the other's renewal and skips it). A *plain* renewal — active or past
    due, not canceling at period end, no pending scheduled change — only moves the period (catching up several if
    needed), re-commits annual seats and bumps the version: the same walk (renewal.py) runs in memory and is
    written with one UPDATE and one audit INSERT for the whole batch, and queues no entitlements reconcile
    (nothing the customer is entitled to changes). Anything else — a trial ending, a cancellation, scheduled
    changes — goes through `subscription_renew`, in a savepoint of its own; one that raises is logged and skipped
    (the next run retries it) and the rest of the batch still renews.
    """
    with transaction.atomic():
        locked = list(
            Subscription.objects.select_for_update(of=("self",))
            .select_related("customer")
            .filter(pk__in=subscription_ids)
            .exclude(status=SubscriptionStatus.ENDED)
            .filter(current_period_end__lte=as_of)
            .only(*_PLAIN_RENEWAL_FIELDS)
            .order_by("pk")
        )
        if not locked:
            return []
        pending_scheduled = set(
            ScheduledChange.objects.filter(
                subscription_id__in=[s.pk for s in locked], applied_at__isnull=True, canceled_at__isnull=True
            ).values_list("subscription_id", flat=True)
        )
        plain = [s for s in locked if is_plain_renewal(s, pending_scheduled)]
        results = _renew_plain_in_bulk(plain, as_of=as_of)
        for subscription in locked:
            if subscription.pk in results:
                continue
            try:
                result = subscription_renew(subscription_id=subscription.pk, as_of=as_of)
            except Exception:  # one bad subscription must not stop the others; the next run retries it
                logger.exception("renewal of subscription %s failed", subscription.pk)
                continue
            if result is not None:
                results[subscription.pk] = result
    return [results[pk] for pk in sorted(results)]


def _renew_plain_in_bulk(plain: list[Subscription], *, as_of: datetime) -> dict[int, RenewalResult]:
    """Walk each plain renewal in memory, then write the rows, audit rows and events with one statement each."""
    live_addons = list(
        SubscriptionAddon.objects.filter(subscription_id__in=[s.pk for s in plain], ended_at__isnull=True).order_by(
            "pk"
        )
    )
    packages = _packages_with_components({s.package_id for s in plain} | {a.package_id for a in live_addons})
    addons: dict[int, list[SubscriptionAddon]] = {}
    for addon in live_addons:
        addon.package = packages[addon.package_id]
        addons.setdefault(addon.subscription_id, []).append(addon)
    results: dict[int, RenewalResult] = {}
    audits: list[AuditEvent] = []
    for subscription in plain:
        subscription.package = packages[subscription.package_id]
        start_version = subscription.version
        steps = _InMemory(terms_from(subscription, addons=addons.get(subscription.pk, [])))
        rollover = renewal_roll_over(subscription, as_of=as_of, steps=steps)
        results[subscription.pk], audit = renewal_close(subscription, rollover, start_version=start_version)
        if audit is not None:  # always set: a plain renewal starts at least one period
            audits.append(audit)
    bulk.bulk_update(Subscription, plain, ["current_period_start", "current_period_end", "committed_seats", "version"])
    bulk.bulk_insert(AuditEvent, audits)
    events_record_many(subscription_event(subscription, change="renewal") for subscription in plain)
    return results


def _packages_with_components(package_ids: set[int]) -> dict[int, Package]:
    return {
        package.pk: package
        for package in Package.objects.filter(pk__in=package_ids).prefetch_related(components_with_sku("components"))
    }
