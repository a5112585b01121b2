"""A package/interval move once it is decided (`_PackageMove`, built by `package._plan_package`), and how it is
written under the subscription lock: scheduled for the period end, or made now (seat ledger, new price snapshot,
a new annual term, the add-ons re-priced for the new interval)."""

from dataclasses import dataclass
from datetime import datetime

from subscriptions.models import (
    Interval,
    Package,
    Price,
    ScheduledChange,
    ScheduledChangeKind,
    Subscription,
    SubscriptionAddon,
)
from subscriptions.services.changes.plan import _cancel_pending
from subscriptions.services.changes.seats import _ledger
from subscriptions.services.terms import Terms


@dataclass(frozen=True)
class _PackageMove:
    """One package/interval move as `_plan_package` decides it, step by step."""

    subscription: Subscription
    current_terms: Terms
    target: Package
    price: Price
    interval: str
    new_seats: int
    seats_chosen: bool  # seats given explicitly (a scheduled move keeps them), or None: keep the count at renewal
    addon_prices: dict[str, dict]  # add-on package id → its price for the new interval (when the interval changes)
    new_terms: Terms
    immediate: bool
    new_period: tuple[datetime, datetime] | None  # a new annual term starting on the change date, if any

    @property
    def package_changed(self) -> bool:
        return self.target.pk != self.subscription.package.pk

    @property
    def interval_changed(self) -> bool:
        return self.interval != self.subscription.interval


def _write(move: _PackageMove, sub: Subscription, when: datetime, actor) -> dict:
    """Step 7, under the subscription lock: replace scheduled seat and package changes, then schedule the move for
    the period end or make it now."""
    _cancel_pending(sub, (ScheduledChangeKind.SEATS, ScheduledChangeKind.PACKAGE), when)
    if not move.immediate:
        return _schedule(move, sub, actor)
    _move_now(move, sub, when, actor)
    return {}


def _schedule(move: _PackageMove, sub: Subscription, actor) -> dict:
    target, price = move.target, move.price
    scheduled = ScheduledChange.objects.create(
        subscription=sub,
        kind=ScheduledChangeKind.PACKAGE,
        payload={
            "package_id": target.pk,
            "package": target.slug,
            "price_id": price.pk,
            "interval": move.interval,
            "flat_amount_minor": price.flat_amount_minor,
            "seat_amount_minor": price.seat_amount_minor,
            "included_seats": target.included_seats,
            # Explicitly chosen seats, or None to keep the count at renewal (raised to the minimum).
            "seats": move.new_seats if move.seats_chosen else None,
            "min_seats": target.min_seats,
            "addon_prices": move.addon_prices,
        },
        effective_at=sub.current_period_end,
        created_by=actor,
    )
    return {"scheduled_change_id": scheduled.pk}


def _move_now(move: _PackageMove, sub: Subscription, when: datetime, actor) -> None:
    target, price, new_seats, interval = move.target, move.price, move.new_seats, move.interval
    _ledger(sub, seats_from=sub.seats, seats_to=new_seats, reason="package change", actor=actor, at=when)
    sub.package = target
    sub.price = price
    sub.flat_amount_minor = price.flat_amount_minor
    sub.seat_amount_minor = price.seat_amount_minor
    sub.included_seats = target.included_seats
    sub.seats = new_seats
    interval_changed = sub.interval != interval
    sub.interval = interval
    if move.new_period is not None:
        sub.current_period_start, sub.current_period_end = move.new_period
        sub.billing_anchor = move.new_period[0]  # a new term: its boundaries count from its first day
    if interval_changed:
        sub.committed_seats = new_seats if interval == Interval.YEAR else 0
        for old_addon, new_addon in zip(move.current_terms.addons, move.new_terms.addons, strict=True):
            SubscriptionAddon.objects.filter(pk=old_addon.addon_id).update(ended_at=when)
            SubscriptionAddon.objects.create(
                subscription=sub,
                package=new_addon.package,
                price_id=new_addon.price_id,
                flat_amount_minor=new_addon.flat_amount_minor,
                quantity=new_addon.quantity,
                started_at=when,
            )
    elif sub.interval == Interval.YEAR:
        sub.committed_seats = max(sub.committed_seats, new_seats)
