"""Scheduled changes at a period boundary: apply the due ones (seat decreases, downgrades, add-on removals), or
cancel them all when the subscription stops."""

from datetime import datetime

from subscriptions.models import (
    Package,
    ScheduledChange,
    ScheduledChangeKind,
    SeatAssignment,
    SeatLedgerEntry,
    Subscription,
    SubscriptionAddon,
)
from subscriptions.services.terms import package_change_seats, scheduled_changes_pending


def cancel_all_scheduled(subscription: Subscription, at: datetime) -> None:
    ScheduledChange.objects.filter(subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True).update(
        canceled_at=at
    )


def apply_due_scheduled(subscription: Subscription, *, boundary: datetime, as_of: datetime) -> list[int]:
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
            set_seats(subscription, target, reason="scheduled seat decrease", actor=change.created_by, at=boundary)
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
            set_seats(subscription, target, reason="scheduled package change", actor=change.created_by, at=boundary)
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


def set_seats(subscription: Subscription, seats: int, *, reason: str, actor, at: datetime) -> None:
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
