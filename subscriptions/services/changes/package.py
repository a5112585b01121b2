"""Moving to another package and/or billing interval: upgrades (and monthly → annual) now, downgrades at the period end.
The plan is built in named steps: resolve the target, carry the add-ons over, decide the timing, price the lines,
describe it, and write it (the decided move and its write are in `package_move.py`)."""

from datetime import UTC, datetime, time
from functools import partial
from typing import Unpack

from subscriptions.exceptions import (
    NoChange,
    PackageNotAvailable,
    UnknownPackage,
)
from subscriptions.models import (
    DowngradeTiming,
    Interval,
    Package,
    Price,
    ScheduledChangeKind,
    SkuKind,
    Subscription,
    SubscriptionChange,
)
from subscriptions.money import format_date, format_period
from subscriptions.periods import period_end as compute_period_end
from subscriptions.services.changes.apply import ApplyRequest, _apply
from subscriptions.services.changes.catalog import (
    _attaches,
    _catalog_offer,
    _interval_label,
    _is_change_target,
    _offered_price,
    _resolve_package,
)
from subscriptions.services.changes.loading import _apply_scheduled, _current, _load, _now, _pending
from subscriptions.services.changes.package_move import _PackageMove, _write
from subscriptions.services.changes.plan import (
    ChangePreview,
    _chargeable,
    _factor,
    _line,
    _Plan,
    _preview,
    _require_changeable,
)
from subscriptions.services.changes.seats import (
    _validate_commitment,
    _validate_not_below_assigned,
    _validate_seat_bounds,
    _validate_seat_number,
)
from subscriptions.services.proration import prorate, utc_date
from subscriptions.services.terms import (
    AddonTerms,
    PreviewLine,
    Terms,
    full_period_line,
    seats_phrase,
    sku_for,
)

Kind = SubscriptionChange.Kind


def _plan_package(subscription: Subscription, at: datetime, package_slug, interval, seats) -> _Plan:
    _require_changeable(subscription, at)
    if not isinstance(package_slug, str) or not package_slug:
        raise UnknownPackage("Choose a package.")
    current_terms = _current(subscription)
    interval = interval or subscription.interval
    target, price, catalog_prices = _offered_target(subscription, current_terms, package_slug, interval)
    new_seats = _new_seat_count(subscription, target, seats)
    new_addons, addon_prices = _carried_addons(subscription, current_terms, target, price, interval, catalog_prices)
    new_terms = Terms(
        package=target,
        price_id=price.pk,
        interval=interval,
        currency=subscription.currency,
        flat_amount_minor=price.flat_amount_minor,
        seat_amount_minor=price.seat_amount_minor,
        included_seats=target.included_seats,
        seats=new_seats,
        addons=tuple(new_addons),
    )
    immediate = _is_immediate(subscription, current_terms, new_terms, interval)
    if immediate and new_seats < subscription.seats:
        _validate_commitment(subscription, new_seats)
    move = _PackageMove(
        subscription=subscription,
        current_terms=current_terms,
        target=target,
        price=price,
        interval=interval,
        new_seats=new_seats,
        seats_chosen=seats is not None,
        addon_prices=addon_prices,
        new_terms=new_terms,
        immediate=immediate,
        new_period=_new_term(subscription, at, interval) if immediate else None,
    )
    lines = _package_lines(move, at) if immediate and _chargeable(subscription) else []
    next_terms = _after_scheduled_removals(move)
    summary, notes = _describe(move)
    before = {
        "package": subscription.package.slug,
        "interval": subscription.interval,
        "seats": subscription.seats,
        "recurring_amount_minor": current_terms.recurring_amount_minor,
    }
    after = {
        "package": target.slug,
        "interval": interval,
        "seats": new_seats,
        "recurring_amount_minor": next_terms.recurring_amount_minor,
        "immediate": immediate,
    }
    preview = _preview(
        Kind.PACKAGE,
        subscription,
        at,
        immediate=immediate,
        lines=lines,
        next_terms=next_terms,
        summary=summary,
        notes=notes,
    )
    return _Plan(preview, partial(_write, move), "subscription.package_changed", before, after)


def _offered_target(
    subscription: Subscription, current_terms: Terms, package_slug: str, interval: str
) -> tuple[Package, Price, dict[int, Price]]:
    """Step 1: the package moved to, its active price for `interval`, and the prices of the add-ons to re-price
    (when the interval changes) — or the error saying why that move is not offered."""
    current_package = subscription.package
    row, catalog_prices = None, {}
    if interval in Interval.values:
        # Add-ons are re-priced when the interval changes: their prices come in the same query.
        reprice = tuple(a.package.pk for a in current_terms.addons) if interval != subscription.interval else ()
        row, catalog_prices = _catalog_offer(
            subscription, slug=package_slug, interval=interval, also_package_ids=reprice
        )
    target = row.package if row is not None else _resolve_package(package_slug)
    if interval not in Interval.values:
        raise PackageNotAvailable(f"Choose monthly or annual billing, not “{interval}”.", field="interval")
    if target.pk == current_package.pk and interval == subscription.interval:
        raise NoChange(f"You are already on {target.name} with {_interval_label(interval)} billing.", field="package")
    offered = (
        target.is_active
        and not target.is_addon
        and (
            target.pk == current_package.pk
            or (row.is_change_target if row is not None else _is_change_target(current_package, target))
        )
    )
    if not offered:
        raise PackageNotAvailable(f"{target.name} is not available as a change from {current_package.name}.")
    price = _offered_price(row, target, interval)
    if price is None:
        raise PackageNotAvailable(
            f"{target.name} is not offered with {_interval_label(interval)} billing in {subscription.currency}.",
            field="interval" if target.pk == current_package.pk else "package",
        )
    return target, price, catalog_prices


def _new_seat_count(subscription: Subscription, target: Package, seats) -> int:
    """Step 2: the seats after the move — `seats`, or the current count raised to the target's minimum — within the
    target's bounds and not below the seats assigned."""
    new_seats = max(subscription.seats, target.min_seats) if seats is None else _validate_seat_number(seats)
    _validate_seat_bounds(target, new_seats)
    if new_seats < subscription.seats:
        _validate_not_below_assigned(subscription, new_seats)
    return new_seats


def _carried_addons(
    subscription: Subscription,
    current_terms: Terms,
    target: Package,
    price: Price,
    interval: str,
    catalog_prices: dict[int, Price],
) -> tuple[list[AddonTerms], dict[str, dict]]:
    """Step 3: add-ons follow the subscription — re-priced for the new interval, or refused if they do not attach
    to the target or are not offered there. Returns the add-on terms after the move and the new prices by package
    id (for a scheduled move)."""
    every_addon_attaches = price.live_addons_attaching == len({a.package.pk for a in current_terms.addons})
    addon_prices: dict[str, dict] = {}
    new_addons = []
    for addon in current_terms.addons:
        if not every_addon_attaches and not _attaches(addon.package, target):
            raise PackageNotAvailable(
                f"{addon.package.name} cannot be added to {target.name}; remove it first.", field="package"
            )
        if interval != subscription.interval:
            addon_price = _offered_price(catalog_prices.get(addon.package.pk), addon.package, interval)
            if addon_price is None:
                raise PackageNotAvailable(
                    f"{addon.package.name} is not offered with {_interval_label(interval)} billing; remove it first.",
                    field="interval",
                )
            addon_prices[str(addon.package.pk)] = {
                "price_id": addon_price.pk,
                "flat_amount_minor": addon_price.flat_amount_minor,
            }
            addon = AddonTerms(
                package=addon.package,
                price_id=addon_price.pk,
                flat_amount_minor=addon_price.flat_amount_minor,
                quantity=addon.quantity,
                addon_id=addon.addon_id,
            )
        new_addons.append(addon)
    return new_addons, addon_prices


def _is_immediate(subscription: Subscription, current_terms: Terms, new_terms: Terms, interval: str) -> bool:
    """Step 4, upgrade or downgrade? A longer interval is a bigger commitment: immediate. A shorter one waits for
    the end of the (annual) term. Same interval: compare what a period costs."""
    if interval != subscription.interval:
        return interval == Interval.YEAR
    is_downgrade = new_terms.base_amount_minor < current_terms.base_amount_minor
    return not is_downgrade or subscription.package.downgrade_timing == DowngradeTiming.IMMEDIATE


def _new_term(subscription: Subscription, at: datetime, interval: str) -> tuple[datetime, datetime] | None:
    """An immediate interval change starts a new term on the change date (the old period is credited). During a
    trial the trial keeps running; the first term of the new interval starts when it ends."""
    if interval == subscription.interval or not _chargeable(subscription):
        return None
    start_day = datetime.combine(utc_date(at), time.min, tzinfo=UTC)
    return start_day, compute_period_end(start_day, interval)


def _package_lines(move: _PackageMove, at: datetime) -> list[PreviewLine]:
    """Step 5, what an immediate move charges now: a credit for the unused part of the old package, then the new
    package prorated to the period end — or, when a new term starts, the whole new term and each add-on credited
    and charged for it as well."""
    subscription, current_terms, new_terms = move.subscription, move.current_terms, move.new_terms
    period_end = subscription.current_period_end
    where = subscription.customer.country  # periods in the descriptions are written as the customer writes dates
    factor = _factor(subscription, at)
    new_sku = sku_for(move.target, SkuKind.RECURRING_FLAT)
    old_label = f"{subscription.package.name} ({seats_phrase(subscription.seats)})"
    new_label = f"{move.target.name} ({seats_phrase(move.new_seats)})"
    lines = [
        _unused_time_line(
            old_label, current_terms.base_amount_minor, at, period_end, factor, subscription.package, where
        )
    ]
    if move.new_period is None:
        lines.append(
            _line(
                description=f"{new_label}, {format_period(at, period_end, where)} (prorated)",
                start=at,
                end=period_end,
                quantity=1,
                unit_amount_minor=new_terms.base_amount_minor,
                amount_minor=prorate(new_terms.base_amount_minor, factor),
                proration=True,
                sku=new_sku,
            )
        )
        return lines
    new_start, new_end = move.new_period
    new_period = format_period(new_start, new_end, where)
    lines.append(
        full_period_line(
            f"{new_label}, {_interval_label(move.interval)}, {new_period}",
            new_start,
            new_end,
            1,
            new_terms.base_amount_minor,
            new_sku,
        )
    )
    for old_addon, new_addon in zip(current_terms.addons, new_terms.addons, strict=True):
        lines.append(
            _unused_time_line(
                old_addon.package.name, old_addon.amount_minor, at, period_end, factor, old_addon.package, where
            )
        )
        lines.append(
            full_period_line(
                f"{new_addon.package.name}, {new_period}",
                new_start,
                new_end,
                new_addon.quantity,
                new_addon.flat_amount_minor,
                sku_for(old_addon.package, SkuKind.RECURRING_FLAT),
            )
        )
    return lines


def _unused_time_line(
    label: str, amount_minor: int, at, period_end, factor, package: Package, where: str
) -> PreviewLine:
    """The credit for the unused part of the period of what the move ends (the old package, or an add-on); `where`:
    the customer's country, whose way of writing dates the period follows."""
    return _line(
        description=f"Unused time on {label}, {format_period(at, period_end, where)}",
        start=at,
        end=period_end,
        quantity=1,
        unit_amount_minor=-amount_minor,
        amount_minor=-prorate(amount_minor, factor),
        proration=True,
        sku=sku_for(package, SkuKind.RECURRING_FLAT),
    )


def _after_scheduled_removals(move: _PackageMove) -> Terms:
    """The terms from the next renewal on: the new terms less the add-on removals still scheduled (the move
    replaces scheduled seat and package changes)."""
    next_terms = move.new_terms
    for change in _pending(move.subscription):
        if change.kind == ScheduledChangeKind.REMOVE_ADDON:
            next_terms = _apply_scheduled(next_terms, change, move.subscription)
    return next_terms


def _describe(move: _PackageMove) -> tuple[str, list[str]]:
    """Step 6: the summary and notes the customer reads."""
    subscription, target = move.subscription, move.target
    pending_replaced = [
        c for c in _pending(subscription) if c.kind in (ScheduledChangeKind.SEATS, ScheduledChangeKind.PACKAGE)
    ]
    notes = []
    if pending_replaced:
        notes.append("This replaces the seat or package change you had scheduled.")
    if move.new_seats != subscription.seats:
        notes.append(f"Your seats change from {subscription.seats} to {move.new_seats}.")
    what = target.name if move.package_changed else f"{_interval_label(move.interval)} billing"
    if move.package_changed and move.interval_changed:
        what = f"{target.name} with {_interval_label(move.interval)} billing"
    if move.immediate:
        return f"Move to {what}, starting now", notes
    renews = format_date(subscription.current_period_end, subscription.customer.country)
    return f"Move to {what} on {renews}", notes


def subscription_change_package_preview(
    *,
    subscription_id: int,
    package_slug: str,
    interval: str | None = None,
    seats: int | None = None,
    at: datetime | None = None,
    subscription: Subscription | None = None,
) -> ChangePreview:
    """Preview moving to another package and/or billing interval.

    Upgrades (a dearer package, or monthly → annual) apply now: a credit line for the unused part of the old package
    and a charge line for the new one (prorated, or a full new annual term). Downgrades (and annual → monthly) wait
    for the period end. `seats` defaults to the current count, raised to the new package's minimum if needed.
    """
    at = _now(at)
    return _plan_package(
        _load(subscription_id, subscription=subscription, at=at), at, package_slug, interval, seats
    ).preview


def subscription_change_package_apply(
    *,
    package_slug: str,
    interval: str | None = None,
    seats: int | None = None,
    reason: str = "",
    **request: Unpack[ApplyRequest],
) -> SubscriptionChange:
    """Apply a package/interval change previewed with `subscription_change_package_preview`."""
    return _apply(
        Kind.PACKAGE, lambda sub, when: _plan_package(sub, when, package_slug, interval, seats), reason, **request
    )
