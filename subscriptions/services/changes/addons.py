"""Adding an add-on (now, prorated) and removing one (at the period end, or now with a credit when the add-on says
immediate). Both take the same arguments."""

from datetime import datetime
from typing import Unpack

from subscriptions.exceptions import (
    AddonAlreadyActive,
    AddonNotActive,
    AddonNotAvailable,
    NoChange,
    UnknownPackage,
)
from subscriptions.models import (
    DowngradeTiming,
    Package,
    ScheduledChange,
    ScheduledChangeKind,
    SkuKind,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
)
from subscriptions.money import format_date, format_period
from subscriptions.services.changes.apply import ApplyRequest, _apply
from subscriptions.services.changes.catalog import _attaches, _catalog_offer, _interval_label, _offered_price
from subscriptions.services.changes.loading import _apply_scheduled, _current, _load, _now, _pending, _projected
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
from subscriptions.services.terms import sku_for

Kind = SubscriptionChange.Kind


def _validate_addon_slug(addon_slug) -> None:
    if not isinstance(addon_slug, str) or not addon_slug:
        raise AddonNotAvailable("Choose an add-on.")


def _resolve_addon(addon_slug) -> Package:
    _validate_addon_slug(addon_slug)
    addon = Package.objects.filter(slug=addon_slug).first()
    if addon is None:
        raise UnknownPackage(f"There is no add-on called “{addon_slug}”.", field="addon")
    return addon


def _plan_addon_add(subscription: Subscription, at: datetime, addon_slug) -> _Plan:
    _require_changeable(subscription, at)
    _validate_addon_slug(addon_slug)
    row, _ = _catalog_offer(subscription, slug=addon_slug, interval=subscription.interval)
    addon = row.package if row is not None else _resolve_addon(addon_slug)
    if (
        not addon.is_addon
        or not addon.is_active
        or not (row.attaches_to_current if row is not None else _attaches(addon, subscription.package))
    ):
        raise AddonNotAvailable(f"{addon.name} is not available for {subscription.package.name}.")
    current = _current(subscription)
    pending_removal = [
        c
        for c in _pending(subscription)
        if c.kind == ScheduledChangeKind.REMOVE_ADDON and int(c.payload["package_id"]) == addon.pk
    ]
    projected = _projected(subscription)
    if current.addon_for(addon.pk) is not None:
        if not pending_removal:
            raise AddonAlreadyActive(f"{addon.name} is already part of your subscription.")
        # Adding back an add-on scheduled for removal just keeps it.
        next_terms = _projected(subscription, exclude_kinds=(ScheduledChangeKind.REMOVE_ADDON,))
        for change in _pending(subscription):
            if change.kind == ScheduledChangeKind.REMOVE_ADDON and change not in pending_removal:
                next_terms = _apply_scheduled(next_terms, change, subscription)

        def write_keep(sub, when, actor):
            _cancel_pending(sub, (ScheduledChangeKind.REMOVE_ADDON,), when, package_id=addon.pk)
            return {}

        preview = _preview(
            Kind.ADD_ADDON,
            subscription,
            at,
            immediate=True,
            lines=[],
            next_terms=next_terms,
            summary=f"Keep {addon.name} (cancels its scheduled removal)",
        )
        return _Plan(preview, write_keep, "subscription.addon_added", {"addon": addon.slug}, {"addon": addon.slug})

    price = _offered_price(row, addon, subscription.interval)
    if price is None:
        raise AddonNotAvailable(
            f"{addon.name} is not offered with {_interval_label(subscription.interval)} billing "
            f"in {subscription.currency}."
        )
    lines = []
    if _chargeable(subscription) and price.flat_amount_minor:
        end = subscription.current_period_end
        lines.append(
            _line(
                description=f"{addon.name}, {format_period(at, end, subscription.customer.country)} (prorated)",
                start=at,
                end=end,
                quantity=1,
                unit_amount_minor=price.flat_amount_minor,
                amount_minor=prorate(price.flat_amount_minor, _factor(subscription, at)),
                proration=True,
                sku=sku_for(addon, SkuKind.RECURRING_FLAT),
            )
        )
    next_recurring = projected.recurring_amount_minor + price.flat_amount_minor

    def write(sub: Subscription, when: datetime, actor) -> dict:
        created = SubscriptionAddon.objects.create(
            subscription=sub,
            package=addon,
            price=price,
            flat_amount_minor=price.flat_amount_minor,
            quantity=1,
            started_at=when,
        )
        return {"addon_id": created.pk}

    preview = _preview(
        Kind.ADD_ADDON,
        subscription,
        at,
        immediate=True,
        lines=lines,
        next_recurring=next_recurring,
        next_terms=projected,
        summary=f"Add {addon.name}, starting now",
    )
    return _Plan(preview, write, "subscription.addon_added", {}, {"addon": addon.slug})


def _plan_addon_remove(subscription: Subscription, at: datetime, addon_slug) -> _Plan:
    _require_changeable(subscription, at)
    _validate_addon_slug(addon_slug)
    current = _current(subscription)
    live = next((a for a in current.addons if a.package.slug == addon_slug), None)
    if live is None:
        addon = _resolve_addon(addon_slug)
        raise AddonNotActive(f"{addon.name} is not part of your subscription.")
    addon = live.package
    already = [
        c
        for c in _pending(subscription)
        if c.kind == ScheduledChangeKind.REMOVE_ADDON and int(c.payload["package_id"]) == addon.pk
    ]
    renews = format_date(subscription.current_period_end, subscription.customer.country)
    if already:
        raise NoChange(f"{addon.name} is already scheduled to end on {renews}.", field="addon")
    immediate = addon.downgrade_timing == DowngradeTiming.IMMEDIATE
    projected = _projected(subscription)
    next_recurring = projected.recurring_amount_minor - (
        projected.addon_for(addon.pk).amount_minor if projected.addon_for(addon.pk) else 0
    )
    lines = []
    if immediate and _chargeable(subscription) and live.amount_minor:
        end = subscription.current_period_end
        lines.append(
            _line(
                description=f"Unused time on {addon.name}, {format_period(at, end, subscription.customer.country)}",
                start=at,
                end=end,
                quantity=1,
                unit_amount_minor=-live.amount_minor,
                amount_minor=-prorate(live.amount_minor, _factor(subscription, at)),
                proration=True,
                sku=sku_for(addon, SkuKind.RECURRING_FLAT),
            )
        )

    def write(sub: Subscription, when: datetime, actor) -> dict:
        if immediate:
            SubscriptionAddon.objects.filter(pk=live.addon_id).update(ended_at=when)
            return {"ended_addon_id": live.addon_id}
        scheduled = ScheduledChange.objects.create(
            subscription=sub,
            kind=ScheduledChangeKind.REMOVE_ADDON,
            payload={"package_id": addon.pk, "addon": addon.slug, "addon_id": live.addon_id},
            effective_at=sub.current_period_end,
            created_by=actor,
        )
        return {"scheduled_change_id": scheduled.pk}

    when_text = "now" if immediate else f"on {renews}"
    preview = _preview(
        Kind.REMOVE_ADDON,
        subscription,
        at,
        immediate=immediate,
        lines=lines,
        next_recurring=next_recurring,
        next_terms=projected,
        summary=f"Remove {addon.name} {when_text}",
    )
    return _Plan(preview, write, "subscription.addon_removed", {"addon": addon.slug}, {"addon": None})


def subscription_addon_add_preview(
    *, subscription_id: int, addon_slug: str, at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview adding an add-on: it starts now, prorated to the period end."""
    at = _now(at)
    return _plan_addon_add(_load(subscription_id, subscription=subscription, at=at), at, addon_slug).preview


def subscription_addon_add_apply(*, addon_slug: str, **request: Unpack[ApplyRequest]) -> SubscriptionChange:
    """Apply an add-on addition previewed with `subscription_addon_add_preview`."""
    return _apply(Kind.ADD_ADDON, lambda sub, when: _plan_addon_add(sub, when, addon_slug), **request)


def subscription_addon_remove_preview(
    *, subscription_id: int, addon_slug: str, at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview removing an add-on: at the period end, no refund (unless the add-on says immediate)."""
    at = _now(at)
    return _plan_addon_remove(_load(subscription_id, subscription=subscription, at=at), at, addon_slug).preview


def subscription_addon_remove_apply(*, addon_slug: str, **request: Unpack[ApplyRequest]) -> SubscriptionChange:
    """Apply an add-on removal previewed with `subscription_addon_remove_preview`."""
    return _apply(Kind.REMOVE_ADDON, lambda sub, when: _plan_addon_remove(sub, when, addon_slug), **request)
