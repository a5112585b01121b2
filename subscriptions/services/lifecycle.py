"""Subscription status changes and renewal.

Every status change goes through one table (`SUBSCRIPTION_TRANSITIONS`): the row is locked, the table checked, the
timestamps set, an audit row written and an entitlements reconcile queued after commit. Forbidden transitions raise
`InvalidTransition` and write nothing.

Statuses: trialing → active at trial end; active ⇄ past_due (dunning); any live status → canceled (immediately, or
at the period end when `cancel_at_period_end` is set); canceled → ended when the paid period is over. "canceled"
means "not renewing, no access"; "ended" is final.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Prefetch, prefetch_related_objects
from django.utils import timezone

from subscriptions import bulk
from subscriptions.exceptions import InvalidTransition, SubscriptionNotChangeable
from subscriptions.models import (
    LIVE_STATUSES,
    SUBSCRIPTION_TRANSITIONS,
    ActorKind,
    AuditEvent,
    Interval,
    Package,
    PackageComponent,
    ScheduledChange,
    ScheduledChangeKind,
    SeatAssignment,
    SeatLedgerEntry,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
    SubscriptionStatus,
    User,
)
from subscriptions.periods import next_boundary
from subscriptions.services.audit import audit_record
from subscriptions.services.events import events_record_many, subscription_event, subscription_event_record
from subscriptions.services.provisioning import entitlements_reconcile_enqueue
from subscriptions.services.terms import (
    PreviewLine,
    Terms,
    format_day,
    package_change_seats,
    scheduled_changes_pending,
    terms_current,
    terms_from,
    terms_lines,
)

logger = logging.getLogger(__name__)
MAX_PERIODS_PER_RENEWAL = 120  # a safety stop: ten years of monthly periods in one catch-up


def _components_with_sku(lookup: str) -> Prefetch:
    return Prefetch(lookup, queryset=PackageComponent.objects.select_related("sku"))


def _lock(subscription_id: int) -> Subscription:
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


def _transition(
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
        subscription = _lock(subscription_id)
        _transition(subscription, to_status, actor=actor, actor_kind=actor_kind, reason=reason, at=at)
    return subscription


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
        subscription = _lock(subscription_id)
        if idempotency_key:
            existing = subscription.changes.filter(idempotency_key=idempotency_key).first()
            if existing is not None:
                return existing
        _transition(subscription, SubscriptionStatus.CANCELED, actor=actor, actor_kind=actor_kind, reason=reason, at=at)
        subscription.cancel_reason = reason
        subscription.save(update_fields=["cancel_reason", "updated_at"])
        _cancel_all_scheduled(subscription, at)
        summary = f"Subscription canceled on {format_day(at)}"
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


def subscription_mark_past_due(
    *, subscription_id: int, actor: User | None = None, reason: str = "", at: datetime | None = None
) -> Subscription:
    """Dunning: a payment failed. active → past_due; a subscription already past due is left as it is."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = _lock(subscription_id)
        if subscription.status != SubscriptionStatus.PAST_DUE:
            _transition(subscription, SubscriptionStatus.PAST_DUE, actor=actor, actor_kind=None, reason=reason, at=at)
    return subscription


def subscription_restore(
    *, subscription_id: int, actor: User | None = None, reason: str = "", at: datetime | None = None
) -> Subscription:
    """Dunning: the overdue invoice was paid. past_due → active; an active subscription is left as it is."""
    at = at or timezone.now()
    with transaction.atomic():
        subscription = _lock(subscription_id)
        if subscription.status != SubscriptionStatus.ACTIVE:
            _transition(subscription, SubscriptionStatus.ACTIVE, actor=actor, actor_kind=None, reason=reason, at=at)
    return subscription


# --- renewal ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenewedPeriod:
    """A period renewal started: billing drafts one invoice per period from exactly these lines (full period,
    from the subscription's snapshot terms at the period start; tax is billing's)."""

    period_start: datetime
    period_end: datetime
    currency: str
    package_slug: str
    package_name: str
    interval: str
    seats: int
    lines: tuple[PreviewLine, ...]
    amount_minor: int

    def to_dict(self) -> dict:
        return {
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "currency": self.currency,
            "package_slug": self.package_slug,
            "package_name": self.package_name,
            "interval": self.interval,
            "seats": self.seats,
            "lines": [line.to_dict() for line in self.lines],
            "amount_minor": self.amount_minor,
        }


@dataclass(frozen=True)
class RenewalResult:
    """What one `subscription_renew` call did.

    `periods` lists every period that started (oldest first; several if renewal caught up); billing invoices each.
    `ended` is True when the subscription was canceled at period end (or already canceled) and has now ended; then
    `periods` holds the periods started before that, if any. `applied_scheduled_change_ids` are the scheduled changes
    that took effect. `version` is the subscription's version afterwards.
    """

    subscription_id: int
    customer_id: int
    status: str
    ended: bool
    periods: tuple[RenewedPeriod, ...]
    applied_scheduled_change_ids: tuple[int, ...]
    version: int


def subscription_renew(*, subscription_id: int, as_of: datetime | None = None) -> RenewalResult | None:
    """Roll the subscription over every period boundary at or before `as_of`. Idempotent.

    Returns None (and writes nothing) when the current period has not ended yet, or the subscription has ended.
    At each boundary, in order: a subscription set to cancel at period end goes canceled → ended (and stops);
    an immediately canceled one ends; due scheduled changes apply (seat decreases — never below the seats then
    assigned — downgrades, add-on removals); a trial becomes active; the next period starts. Locks the row.
    """
    as_of = as_of or timezone.now()
    with transaction.atomic():
        subscription = _lock(subscription_id)
        if subscription.status == SubscriptionStatus.ENDED or subscription.current_period_end > as_of:
            return None
        # terms_lines reads the package's components and their SKUs for every period: one query, not one per line.
        prefetch_related_objects([subscription], _components_with_sku("package__components"))
        periods: list[RenewedPeriod] = []
        applied: list[int] = []
        ended = False
        start_version = subscription.version
        for _ in range(MAX_PERIODS_PER_RENEWAL):
            if subscription.current_period_end > as_of:
                break
            boundary = subscription.current_period_end
            if subscription.status == SubscriptionStatus.CANCELED:
                _transition(
                    subscription,
                    SubscriptionStatus.ENDED,
                    actor=None,
                    actor_kind=None,
                    reason="period over",
                    at=boundary,
                )
                ended = True
                break
            if subscription.cancel_at_period_end:
                reason = subscription.cancel_reason or "canceled at period end"
                _transition(
                    subscription, SubscriptionStatus.CANCELED, actor=None, actor_kind=None, reason=reason, at=boundary
                )
                _cancel_all_scheduled(subscription, as_of)
                _transition(
                    subscription, SubscriptionStatus.ENDED, actor=None, actor_kind=None, reason=reason, at=boundary
                )
                ended = True
                break
            applied += _apply_due_scheduled(subscription, boundary=boundary, as_of=as_of)
            if subscription.status == SubscriptionStatus.TRIALING:
                _transition(
                    subscription,
                    SubscriptionStatus.ACTIVE,
                    actor=None,
                    actor_kind=None,
                    reason="trial ended",
                    at=boundary,
                )
            _advance_period(subscription, start=boundary)
            subscription.save()
            periods.append(_renewed_period(subscription, terms_current(subscription)))
        if periods:
            subscription.version += 1
            subscription.save(update_fields=["version", "updated_at"])
            audit_record(
                customer=subscription.customer,
                action="subscription.renewed",
                obj=subscription,
                summary=_renewed_summary(subscription),
                before={"version": start_version},
                after=_renewed_after(periods, applied, subscription.version),
            )
            subscription_event_record(subscription, change="renewal")
            if applied:
                # Only a scheduled change alters what the customer is entitled to; a status change (trial over,
                # cancellation) has already queued its own reconcile in _transition. Moving the period does not.
                entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger="subscription.renewed")
        return RenewalResult(
            subscription_id=subscription.pk,
            customer_id=subscription.customer_id,
            status=subscription.status,
            ended=ended,
            periods=tuple(periods),
            applied_scheduled_change_ids=tuple(applied),
            version=subscription.version,
        )


def _renewed_summary(subscription: Subscription) -> str:
    return f"Renewed until {format_day(subscription.current_period_end)}"


def _renewed_after(periods: list[RenewedPeriod], applied: list[int], version: int) -> dict:
    return {
        "periods": [[p.period_start.isoformat(), p.period_end.isoformat()] for p in periods],
        "applied_scheduled_change_ids": applied,
        "version": version,
    }


# What a plain renewal reads and writes (loading only these makes the chunk's lock query cheaper; the
# per-subscription path locks and loads its rows itself).
_PLAIN_RENEWAL_FIELDS = (
    "customer",
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


def _is_plain_renewal(subscription: Subscription, pending_scheduled: set[int]) -> bool:
    """A renewal that only moves the period: no status change, no scheduled change to apply, nothing ending."""
    return (
        subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
        and not subscription.cancel_at_period_end
        and subscription.pk not in pending_scheduled
    )


def _advance_period(subscription: Subscription, *, start: datetime) -> None:
    """Move the subscription (in memory) to the period starting at `start` and ending at the next boundary of its
    billing anchor (never "start + one interval": that drifts 31 Jan → 28 Feb → 28 Mar). The single renewal and the
    batch renewal both move periods here, so they share the rule."""
    subscription.current_period_start = start
    subscription.current_period_end = next_boundary(subscription.billing_anchor, subscription.interval, start)
    if subscription.interval == Interval.YEAR:
        subscription.committed_seats = subscription.seats  # a new annual term commits to today's seats


def _renewed_period(subscription: Subscription, terms: Terms) -> RenewedPeriod:
    """The period the subscription has just moved to, with the lines it bills on `terms`."""
    start, end = subscription.current_period_start, subscription.current_period_end
    lines = tuple(terms_lines(terms, period_start=start, period_end=end))
    return RenewedPeriod(
        period_start=start,
        period_end=end,
        currency=subscription.currency,
        package_slug=subscription.package.slug,
        package_name=subscription.package.name,
        interval=subscription.interval,
        seats=subscription.seats,
        lines=lines,
        amount_minor=sum(line.amount_minor for line in lines),
    )


def _renew_plain(subscription: Subscription, *, as_of: datetime, addons: list[SubscriptionAddon]) -> RenewalResult:
    """subscription_renew's loop for a plain renewal, in memory (the caller holds the row lock and writes)."""
    terms = terms_from(subscription, addons=addons)
    periods: list[RenewedPeriod] = []
    for _ in range(MAX_PERIODS_PER_RENEWAL):
        if subscription.current_period_end > as_of:
            break
        _advance_period(subscription, start=subscription.current_period_end)
        periods.append(_renewed_period(subscription, terms))
    subscription.version += 1
    return RenewalResult(
        subscription_id=subscription.pk,
        customer_id=subscription.customer_id,
        status=subscription.status,
        ended=False,
        periods=tuple(periods),
        applied_scheduled_change_ids=(),
        version=subscription.version,
    )


def subscription_renew_batch(*, subscription_ids: list[int], as_of: datetime) -> list[RenewalResult]:
    """Renew many subscriptions (the billing run's path), with exactly the outcome of `subscription_renew` on each:
    the same periods, lines, row changes and audit rows. Returns the results of those that renewed, in id order.

    Locks every row of the batch with one SELECT … FOR UPDATE in primary-key order (so two runs queue rather than
    deadlock, and a run that waited sees the other's renewal and skips it). A *plain* renewal — active or past
    due, not canceling at period end, no pending scheduled change — only moves the period (catching up several if
    needed), re-commits annual seats and bumps the version: those are computed in memory and written with one
    UPDATE and one audit INSERT for the whole batch, and queue no entitlements reconcile (nothing the customer is
    entitled to changes). Anything else — a trial ending, a cancellation, scheduled changes — goes through
    `subscription_renew`, in a savepoint of its own; one that raises is logged and skipped (the next run retries
    it) and the rest of the batch still renews.
    """
    with transaction.atomic():
        locked = list(
            Subscription.objects.select_for_update(of=("self",))
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
        plain = [s for s in locked if _is_plain_renewal(s, pending_scheduled)]
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
        audits = []
        for subscription in plain:
            subscription.package = packages[subscription.package_id]
            start_version = subscription.version
            result = _renew_plain(subscription, as_of=as_of, addons=addons.get(subscription.pk, []))
            results[subscription.pk] = result
            audits.append(
                AuditEvent(
                    customer_id=subscription.customer_id,
                    actor=None,
                    actor_kind=ActorKind.SYSTEM,
                    action="subscription.renewed",
                    object_type=subscription._meta.model_name,
                    object_id=str(subscription.pk),
                    summary=_renewed_summary(subscription)[:300],
                    before={"version": start_version},
                    after=_renewed_after(list(result.periods), [], result.version),
                    reason="",
                )
            )
        bulk.bulk_update(
            Subscription,
            plain,
            ["current_period_start", "current_period_end", "committed_seats", "version"],
        )
        bulk.bulk_insert(AuditEvent, audits)
        events_record_many(subscription_event(subscription, change="renewal") for subscription in plain)
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


def _packages_with_components(package_ids: set[int]) -> dict[int, Package]:
    return {
        package.pk: package
        for package in Package.objects.filter(pk__in=package_ids).prefetch_related(_components_with_sku("components"))
    }


def subscriptions_due_for_renewal(*, as_of: datetime | None = None) -> list[int]:
    """Ids of subscriptions whose period ended at or before `as_of` and that are not ended (for the billing run)."""
    as_of = as_of or timezone.now()
    return list(
        Subscription.objects.filter(current_period_end__lte=as_of)
        .exclude(status=SubscriptionStatus.ENDED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _cancel_all_scheduled(subscription: Subscription, at: datetime) -> None:
    ScheduledChange.objects.filter(subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True).update(
        canceled_at=at
    )


def _apply_due_scheduled(subscription: Subscription, *, boundary: datetime, as_of: datetime) -> list[int]:
    """Apply scheduled changes effective at or before `boundary`, in order. The caller holds the row lock."""
    applied = []
    for change in scheduled_changes_pending(subscription):
        if change.effective_at > boundary:
            continue
        payload = change.payload
        if change.kind == ScheduledChangeKind.SEATS:
            assigned = SeatAssignment.objects.filter(subscription=subscription).count()
            # Members may have been assigned after the decrease was scheduled: never drop below who holds a seat.
            target = max(int(payload["seats"]), assigned)
            _set_seats(subscription, target, reason="scheduled seat decrease", actor=change.created_by, at=boundary)
        elif change.kind == ScheduledChangeKind.REMOVE_ADDON:
            SubscriptionAddon.objects.filter(
                subscription=subscription, package_id=payload["package_id"], ended_at__isnull=True
            ).update(ended_at=boundary)
        elif change.kind == ScheduledChangeKind.PACKAGE:
            package = Package.objects.get(pk=payload["package_id"])
            subscription.package = package
            subscription.price_id = int(payload["price_id"])
            subscription.interval = payload["interval"]
            subscription.flat_amount_minor = int(payload["flat_amount_minor"])
            subscription.seat_amount_minor = int(payload["seat_amount_minor"])
            subscription.included_seats = int(payload["included_seats"])
            assigned = SeatAssignment.objects.filter(subscription=subscription).count()
            target = max(package_change_seats(subscription.seats, payload), assigned)
            _set_seats(subscription, target, reason="scheduled package change", actor=change.created_by, at=boundary)
            for package_id, repriced in (payload.get("addon_prices") or {}).items():
                live = SubscriptionAddon.objects.filter(
                    subscription=subscription, package_id=int(package_id), ended_at__isnull=True
                ).first()
                if live is None:
                    continue
                live.ended_at = boundary
                live.save(update_fields=["ended_at"])
                SubscriptionAddon.objects.create(
                    subscription=subscription,
                    package_id=int(package_id),
                    price_id=int(repriced["price_id"]),
                    flat_amount_minor=int(repriced["flat_amount_minor"]),
                    quantity=live.quantity,
                    started_at=boundary,
                )
            subscription.save()
        change.applied_at = as_of
        change.save(update_fields=["applied_at"])
        applied.append(change.pk)
    return applied


def _set_seats(subscription: Subscription, seats: int, *, reason: str, actor, at: datetime) -> None:
    if seats != subscription.seats:
        SeatLedgerEntry.objects.create(
            subscription=subscription,
            seats_from=subscription.seats,
            seats_to=seats,
            reason=reason,
            actor=actor,
            effective_at=at,
        )
        subscription.seats = seats
        subscription.save()


__all__ = [
    "LIVE_STATUSES",
    "RenewalResult",
    "RenewedPeriod",
    "subscription_cancel_now",
    "subscription_mark_past_due",
    "subscription_renew",
    "subscription_renew_batch",
    "subscription_restore",
    "subscription_transition",
    "subscriptions_due_for_renewal",
]
