"""Changing the purchased seat count: increases now and prorated, decreases at the period end (or now with a credit
when the package says immediate). The seat rules here (bounds, assigned seats, annual commitment) also bind package
changes."""

from dataclasses import replace
from datetime import datetime
from typing import Unpack

from subscriptions.exceptions import (
    InvalidSeatCount,
    NoChange,
    SeatsAboveMaximum,
    SeatsBelowAssigned,
    SeatsBelowCommitment,
    SeatsBelowMinimum,
)
from subscriptions.models import (
    DowngradeTiming,
    Interval,
    Package,
    ScheduledChange,
    ScheduledChangeKind,
    SeatLedgerEntry,
    SkuKind,
    Subscription,
    SubscriptionChange,
)
from subscriptions.money import format_date, format_period
from subscriptions.services.changes.apply import ApplyRequest, _apply
from subscriptions.services.changes.loading import _load, _now, _pending, _projected, _seats_assigned
from subscriptions.services.changes.plan import (
    ChangePreview,
    _cancel_pending,
    _chargeable,
    _factor,
    _line,
    _Plan,
    _preview,
    _require_changeable,
)
from subscriptions.services.proration import prorate
from subscriptions.services.terms import (
    PreviewLine,
    Terms,
    seats_phrase,
    sku_for,
)

Kind = SubscriptionChange.Kind


def _ledger(subscription: Subscription, *, seats_from: int, seats_to: int, reason: str, actor, at) -> None:
    if seats_from != seats_to:
        SeatLedgerEntry.objects.create(
            subscription=subscription,
            seats_from=seats_from,
            seats_to=seats_to,
            reason=reason,
            actor=actor,
            effective_at=at,
        )


def _validate_seat_number(seats) -> int:
    if isinstance(seats, bool) or not isinstance(seats, int):
        raise InvalidSeatCount("Enter a whole number of seats.")
    if seats < 0:
        raise InvalidSeatCount("The number of seats cannot be negative.")
    return seats


def _validate_seat_bounds(package: Package, seats: int) -> None:
    if seats < package.min_seats:
        raise SeatsBelowMinimum(f"{package.name} needs at least {seats_phrase(package.min_seats)}.")
    if package.max_seats is not None and seats > package.max_seats:
        raise SeatsAboveMaximum(f"{package.name} allows at most {seats_phrase(package.max_seats)}.")


def _validate_not_below_assigned(subscription: Subscription, seats: int) -> None:
    assigned = _seats_assigned(subscription)
    if seats < assigned:
        people = "1 person holds a seat" if assigned == 1 else f"{assigned} people hold seats"
        raise SeatsBelowAssigned(f"{people}; unassign {assigned - seats} before going down to {seats}")


def _validate_commitment(subscription: Subscription, seats: int) -> None:
    if subscription.interval == Interval.YEAR and seats < subscription.committed_seats:
        until = format_date(subscription.current_period_end, subscription.customer.country)
        raise SeatsBelowCommitment(
            f"Your annual plan commits to {seats_phrase(subscription.committed_seats)} until {until}; "
            "you can lower it from then on."
        )


def _plan_seats(subscription: Subscription, at: datetime, seats) -> _Plan:
    seats = _validate_seat_number(seats)
    _require_changeable(subscription, at)
    current = subscription.seats
    pending_seats = [c for c in _pending(subscription) if c.kind == ScheduledChangeKind.SEATS]
    projected_other = _projected(subscription, exclude_kinds=(ScheduledChangeKind.SEATS,))
    before = {"seats": current, "scheduled_seats": pending_seats[-1].payload["seats"] if pending_seats else None}

    if seats == current:
        if not pending_seats:
            raise NoChange(f"You already have {seats_phrase(seats)}.", field="seats")
        # Keeping the current count cancels the scheduled decrease.
        summary = f"Keep {seats_phrase(seats)} (cancels the scheduled change to {before['scheduled_seats']})"

        def write_keep(sub, when, actor):
            _cancel_pending(sub, (ScheduledChangeKind.SEATS,), when)
            return {"seats": seats, "scheduled_seats": None}

        preview = _preview(
            Kind.SEATS,
            subscription,
            at,
            immediate=True,
            lines=[],
            next_terms=_replace_seats(projected_other, seats),
            summary=summary,
        )
        return _Plan(preview, write_keep, "subscription.seats_changed", before, {"seats": seats})

    _validate_seat_bounds(subscription.package, seats)
    if projected_other.package.pk != subscription.package.pk:
        _validate_seat_bounds(projected_other.package, seats)
    package = subscription.package
    increase = seats > current
    immediate = increase or package.downgrade_timing == DowngradeTiming.IMMEDIATE
    if not increase:
        if immediate:  # a decrease at the end of the term is not "mid-term": the commitment only binds before it
            _validate_commitment(subscription, seats)
        _validate_not_below_assigned(subscription, seats)

    lines: list[PreviewLine] = []
    if immediate and _chargeable(subscription):
        billed_before = max(0, current - subscription.included_seats)
        billed_after = max(0, seats - subscription.included_seats)
        delta = billed_after - billed_before
        if delta:
            factor = _factor(subscription, at)
            start = at
            end = subscription.current_period_end
            period = format_period(start, end, subscription.customer.country)  # as the customer writes dates
            if delta > 0:
                description = f"{package.name} — {seats_phrase(delta, adjective='additional')}, {period} (prorated)"
            else:
                description = f"{package.name} — {seats_phrase(-delta)} removed, unused time {period}"
            lines.append(
                _line(
                    description=description,
                    start=start,
                    end=end,
                    quantity=delta,
                    unit_amount_minor=subscription.seat_amount_minor,
                    amount_minor=prorate(delta * subscription.seat_amount_minor, factor),
                    proration=True,
                    sku=sku_for(package, SkuKind.RECURRING_PER_SEAT),
                )
            )
    next_terms = _replace_seats(projected_other, seats)
    notes = []
    if pending_seats:
        notes.append(f"This replaces your scheduled change to {seats_phrase(pending_seats[-1].payload['seats'])}.")
    if immediate:
        summary = f"Change from {current} to {seats_phrase(seats)}, starting now"
    else:
        renews = format_date(subscription.current_period_end, subscription.customer.country)
        summary = f"Change from {current} to {seats_phrase(seats)} on {renews}"

    def write(sub: Subscription, when: datetime, actor) -> dict:
        _cancel_pending(sub, (ScheduledChangeKind.SEATS,), when)
        _forget_package_change_seats(sub)
        if immediate:
            _ledger(sub, seats_from=sub.seats, seats_to=seats, reason="seat change", actor=actor, at=when)
            sub.seats = seats
            if sub.interval == Interval.YEAR:
                # Seats added mid-term are paid to the term end, so they join the commitment.
                sub.committed_seats = max(sub.committed_seats, seats)
            return {"seats": seats}
        scheduled = ScheduledChange.objects.create(
            subscription=sub,
            kind=ScheduledChangeKind.SEATS,
            payload={"seats": seats, "seats_from": sub.seats},
            effective_at=sub.current_period_end,
            created_by=actor,
        )
        return {"scheduled_change_id": scheduled.pk, "scheduled_seats": seats}

    preview = _preview(
        Kind.SEATS,
        subscription,
        at,
        immediate=immediate,
        lines=lines,
        next_terms=next_terms,
        summary=summary,
        notes=notes,
    )
    after = {"seats": seats} if immediate else {"seats": current, "scheduled_seats": seats}
    return _Plan(preview, write, "subscription.seats_changed", before, after)


def _forget_package_change_seats(subscription: Subscription) -> None:
    # A seat change made after a package change was scheduled wins over the seat count chosen with it: the package
    # change then keeps whatever count the subscription has at renewal (never below the package minimum).
    for change in _pending(subscription):
        if change.kind == ScheduledChangeKind.PACKAGE and change.payload.get("seats") is not None:
            change.payload = {**change.payload, "seats": None}
            change.save(update_fields=["payload"])


def _replace_seats(terms: Terms, seats: int) -> Terms:
    return replace(terms, seats=seats)


def subscription_change_seats_preview(
    *, subscription_id: int, seats: int, at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview changing the purchased seat count to `seats` (increase now and prorated; decrease at period end).

    `subscription`: that subscription, if the caller loaded it with `subscriptions_for_change` (nothing is reloaded).
    """
    at = _now(at)
    return _plan_seats(_load(subscription_id, subscription=subscription, at=at), at, seats).preview


def subscription_change_seats_apply(
    *, seats: int, reason: str = "", **request: Unpack[ApplyRequest]
) -> SubscriptionChange:
    """Apply a seat change previewed with `subscription_change_seats_preview` (see the package docstring)."""
    return _apply(Kind.SEATS, lambda sub, when: _plan_seats(sub, when, seats), reason, **request)
