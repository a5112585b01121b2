"""Changes a customer makes to a subscription: preview, then apply exactly what the preview showed.

Every change has a `*_preview(...)` returning a `ChangePreview` (no writes) and a `*_apply(...)` that:
- locks the subscription row (`select_for_update`), so two simultaneous changes queue instead of losing one another;
- returns the first `SubscriptionChange` unchanged when the same idempotency key is applied again;
- refuses with `StalePreview` when the subscription's version differs from the preview's (or, if the caller passes
  `expected_amount_due_minor`, when the amount due now differs — e.g. the day rolled over);
- recomputes the preview under the lock and writes it as `SubscriptionChange.result` (amounts in minor units) —
  billing invoices changes from those rows;
- bumps `Subscription.version`, writes the seat ledger / scheduled change, an audit event, and enqueues an
  entitlements reconcile after commit.

Rules (docs/billing-rules.md, "Proration"): seat increases, upgrades and add-ons take effect immediately and are
prorated; seat decreases, downgrades and add-on removals take effect at the period end with no refund, unless the
package's `downgrade_timing` is "immediate" (then they apply now with a prorated credit). Nothing is charged while
trialing. Bad input raises a `SubscriptionError` subclass and writes nothing.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from subscriptions.exceptions import (
    AddonAlreadyActive,
    AddonNotActive,
    AddonNotAvailable,
    CancellationError,
    IdempotencyKeyReused,
    InvalidSeatCount,
    NoChange,
    PackageNotAvailable,
    SeatsAboveMaximum,
    SeatsBelowAssigned,
    SeatsBelowCommitment,
    SeatsBelowMinimum,
    StalePreview,
    SubscriptionNotChangeable,
    UnknownPackage,
)
from subscriptions.models import (
    LIVE_STATUSES,
    DowngradeTiming,
    Interval,
    Package,
    Price,
    ScheduledChange,
    ScheduledChangeKind,
    SeatAssignment,
    SeatLedgerEntry,
    SkuKind,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
    SubscriptionStatus,
    User,
)
from subscriptions.periods import period_end as compute_period_end
from subscriptions.services.audit import audit_record
from subscriptions.services.events import subscription_event_record
from subscriptions.services.lifecycle import subscription_renew
from subscriptions.services.proration import prorate, proration_factor, utc_date
from subscriptions.services.provisioning import entitlements_reconcile_enqueue
from subscriptions.services.terms import (
    AddonTerms,
    PreviewLine,
    Terms,
    format_day,
    format_period,
    seats_phrase,
    sku_annotations,
    sku_for,
    sku_remember,
    terms_apply_scheduled,
    terms_current,
    terms_projected,
)

Kind = SubscriptionChange.Kind

__all__ = [
    "ChangePreview",
    "PreviewLine",
    "subscription_addon_add_apply",
    "subscription_addon_add_preview",
    "subscription_addon_remove_apply",
    "subscription_addon_remove_preview",
    "subscription_cancel_apply",
    "subscription_cancel_preview",
    "subscription_change_package_apply",
    "subscription_change_package_preview",
    "subscription_change_seats_apply",
    "subscription_change_seats_preview",
    "subscription_reactivate_apply",
    "subscription_reactivate_preview",
    "subscriptions_for_change",
]


@dataclass(frozen=True)
class ChangePreview:
    """What a change will do, in the customer's words and in minor units of `currency`.

    `amount_due_now_minor` is the sum of the lines (negative means a credit to the customer); tax is added by billing.
    `next_recurring_amount_minor` is what each period costs from the next renewal on (0 when the subscription ends).
    `effective_at` is when the change takes effect (now, or the period end for scheduled changes); `immediate` says
    which. `version` must be passed back to the matching `*_apply` as `expected_version`. `recurring_interval` is
    the period `next_recurring_amount_minor` is for ("year" after a move to annual billing), `current_interval` the
    one of `current_recurring_amount_minor`.
    """

    kind: str
    subscription_id: int
    version: int
    currency: str
    effective_at: datetime
    immediate: bool
    lines: tuple[PreviewLine, ...]
    amount_due_now_minor: int
    next_recurring_amount_minor: int
    summary: str
    current_recurring_amount_minor: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    recurring_interval: str = ""
    current_interval: str = ""

    def to_dict(self) -> dict:
        """JSON-ready (stored as `SubscriptionChange.result`): datetimes as ISO 8601, amounts as integers."""
        return {
            "kind": self.kind,
            "subscription_id": self.subscription_id,
            "version": self.version,
            "currency": self.currency,
            "effective_at": self.effective_at.isoformat(),
            "immediate": self.immediate,
            "lines": [line.to_dict() for line in self.lines],
            "amount_due_now_minor": self.amount_due_now_minor,
            "next_recurring_amount_minor": self.next_recurring_amount_minor,
            "current_recurring_amount_minor": self.current_recurring_amount_minor,
            "recurring_interval": self.recurring_interval,
            "current_interval": self.current_interval,
            "summary": self.summary,
            "notes": list(self.notes),
        }


# A computed change: the preview plus the writes that make it true (run under the subscription lock).
Writer = Callable[[Subscription, datetime, User | None], dict]


@dataclass(frozen=True)
class _Plan:
    preview: ChangePreview
    write: Writer
    audit_action: str
    before: dict
    after: dict


# --- shared helpers --------------------------------------------------------------------------------------------


def _now(at: datetime | None) -> datetime:
    return at or timezone.now()


# What a change reads, loaded once (`subscriptions_for_change`): the SKUs of the package's own fees, the live add-ons
# and the pending scheduled changes. A plan never queries them again.
_PACKAGE_SKUS = (SkuKind.RECURRING_FLAT, SkuKind.RECURRING_PER_SEAT)
_ADDON_SKUS = (SkuKind.RECURRING_FLAT,)
_LIVE_ADDONS = "change_live_addons"
_PENDING = "change_pending_changes"
_SCHEDULED_PACKAGES = "change_scheduled_packages"
_ASSIGNED = "change_seats_assigned"


def subscriptions_for_change(*, lock: bool = False) -> QuerySet[Subscription]:
    """Subscriptions loaded with everything a change preview reads, in one query and two prefetches: the package
    (with the SKU code and tax category of its flat and per-seat fees), the customer, the number of seats assigned,
    the live add-ons (with their packages and flat-fee SKUs) and the pending scheduled changes.

    Callers narrow or extend it (`.filter(customer=...)`, `.select_related("customer__billing_profile")`) and pass
    the subscription they got to a `*_preview(..., subscription=...)`, so a preview loads nothing twice.

    With `lock` (inside `transaction.atomic()`, as applying a change does) the row is locked (`select_for_update`)
    and only the row, the package and the customer come with it: add-ons, scheduled changes and the seats assigned
    are read when the change needs them, after the lock is held — a subquery or prefetch issued with the locking
    query could see them as they were before a concurrent change committed — and not at all for a replayed
    idempotency key or a stale version.
    """
    queryset = Subscription.objects.select_related("package", "customer").annotate(
        **sku_annotations(package_ref="package_id", kinds=_PACKAGE_SKUS)
    )
    if lock:
        return queryset.select_for_update(of=("self",))
    assigned = (
        SeatAssignment.objects.filter(subscription_id=OuterRef("pk"))
        .values("subscription_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return queryset.annotate(**{_ASSIGNED: Coalesce(Subquery(assigned), 0)}).prefetch_related(
        Prefetch("addons", queryset=_live_addons_queryset(), to_attr=_LIVE_ADDONS),
        Prefetch(
            "scheduled_changes",
            queryset=ScheduledChange.objects.filter(applied_at__isnull=True, canceled_at__isnull=True).order_by(
                "effective_at", "pk"
            ),
            to_attr=_PENDING,
        ),
    )


def _live_addons_queryset() -> QuerySet[SubscriptionAddon]:
    return (
        SubscriptionAddon.objects.filter(ended_at__isnull=True)
        .select_related("package")
        .annotate(**sku_annotations(package_ref="package_id", kinds=_ADDON_SKUS))
        .order_by("pk")
    )


def _load(
    subscription_id: int, *, lock: bool = False, subscription: Subscription | None = None, at: datetime | None = None
) -> Subscription:
    """The subscription a change acts on: `subscription` when the caller loaded it already (with
    `subscriptions_for_change`), else loaded here.

    With `at`, a subscription whose current period ended at or before `at` is first renewed on demand through the
    renewal service (`subscription_renew`, the billing run's rule; idempotent, locks the row), then loaded again: a
    change at 00:10 on the 1st applies to the new period instead of waiting for the billing run."""
    if isinstance(subscription_id, bool) or not isinstance(subscription_id, int):
        raise SubscriptionNotChangeable("That subscription does not exist.", field="subscription")
    if subscription is not None:
        if lock:
            raise ValueError("A change is applied on the subscription it locks itself.")
        if subscription.pk != subscription_id:
            raise ValueError(f"subscription={subscription.pk} is not subscription_id={subscription_id}.")
        if not _renewed_on_demand(subscription, at):
            return _prepare(subscription)
    try:
        loaded = _prepare(subscriptions_for_change(lock=lock).get(pk=subscription_id))
    except Subscription.DoesNotExist:
        raise SubscriptionNotChangeable("That subscription does not exist.", field="subscription")
    if _renewed_on_demand(loaded, at):
        return _prepare(subscriptions_for_change(lock=lock).get(pk=subscription_id))
    return loaded


def _renewed_on_demand(subscription: Subscription, at: datetime | None) -> bool:
    """Renew `subscription` if its period is over at `at` (see `_load`); True when the renewal moved it."""
    if at is None or subscription.current_period_end > at or subscription.status == SubscriptionStatus.ENDED:
        return False
    return subscription_renew(subscription_id=subscription.pk, as_of=at) is not None


def _prepare(subscription: Subscription) -> Subscription:
    # The SKUs annotated on the row go onto the package instance, where `sku_for` looks first.
    sku_remember(subscription.package, subscription, kinds=_PACKAGE_SKUS)
    return subscription


def _live_addons(subscription: Subscription) -> list[SubscriptionAddon]:
    addons = subscription.__dict__.get(_LIVE_ADDONS)
    if addons is None:  # locked for an apply, or not loaded by `subscriptions_for_change`: read now
        addons = list(_live_addons_queryset().filter(subscription=subscription))
        subscription.__dict__[_LIVE_ADDONS] = addons
    if not subscription.__dict__.get("_addon_skus_remembered"):
        for addon in addons:
            sku_remember(addon.package, addon, kinds=_ADDON_SKUS)
        subscription.__dict__["_addon_skus_remembered"] = True
    return addons


def _pending(subscription: Subscription) -> list[ScheduledChange]:
    """The pending scheduled changes, soonest first. Filtered again here, so one canceled by this change's writes
    (`_cancel_pending`) is no longer pending."""
    changes = subscription.__dict__.get(_PENDING)
    if changes is None:
        changes = list(
            ScheduledChange.objects.filter(
                subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True
            ).order_by("effective_at", "pk")
        )
        subscription.__dict__[_PENDING] = changes
    return [c for c in changes if c.applied_at is None and c.canceled_at is None]


def _scheduled_packages(subscription: Subscription) -> dict[int, Package]:
    """The packages pending package changes move to (one query, only when there is such a change)."""
    packages = subscription.__dict__.get(_SCHEDULED_PACKAGES)
    if packages is None:
        ids = {int(c.payload["package_id"]) for c in _pending(subscription) if c.kind == ScheduledChangeKind.PACKAGE}
        packages = Package.objects.in_bulk(ids) if ids else {}
        subscription.__dict__[_SCHEDULED_PACKAGES] = packages
    return packages


def _current(subscription: Subscription) -> Terms:
    return terms_current(subscription, addons=_live_addons(subscription))


def _projected(subscription: Subscription, *, exclude_kinds: tuple[str, ...] = ()) -> Terms:
    return terms_projected(
        subscription,
        exclude_kinds=exclude_kinds,
        addons=_live_addons(subscription),
        pending=_pending(subscription),
        packages=_scheduled_packages(subscription),
    )


def _apply_scheduled(terms: Terms, change: ScheduledChange, subscription: Subscription) -> Terms:
    return terms_apply_scheduled(terms, change, packages=_scheduled_packages(subscription))


def _require_changeable(subscription: Subscription, at: datetime) -> None:
    if subscription.status not in LIVE_STATUSES:
        raise SubscriptionNotChangeable(
            f"This subscription is {subscription.get_status_display().lower()} and can no longer be changed."
        )
    if at >= subscription.current_period_end:
        # Only reached when the on-demand renewal in `_load` could not move the period (it ends here, or `at` lies
        # beyond what one renewal catches up).
        raise SubscriptionNotChangeable("This subscription's period is over and it cannot be renewed.")


def _chargeable(subscription: Subscription) -> bool:
    # A trial is free: changes during it take effect without charge; the first invoice uses the new terms.
    return subscription.status != SubscriptionStatus.TRIALING


def _factor(subscription: Subscription, at: datetime):
    return proration_factor(
        at=at, period_start=subscription.current_period_start, period_end=subscription.current_period_end
    )


def _line(
    *,
    description: str,
    start: datetime,
    end: datetime,
    quantity: int,
    unit_amount_minor: int,
    amount_minor: int,
    proration: bool,
    sku: tuple[str, str],
) -> PreviewLine:
    return PreviewLine(
        description=description,
        period_start=start,
        period_end=end,
        quantity=quantity,
        unit_amount_minor=unit_amount_minor,
        amount_minor=amount_minor,
        proration=proration,
        sku_code=sku[0],
        tax_category=sku[1],
    )


def _preview(
    *,
    kind: str,
    subscription: Subscription,
    at: datetime,
    immediate: bool,
    lines: list[PreviewLine],
    next_recurring: int,
    summary: str,
    notes: list[str] | None = None,
    recurring_interval: str | None = None,
) -> ChangePreview:
    return ChangePreview(
        kind=kind,
        subscription_id=subscription.pk,
        version=subscription.version,
        currency=subscription.currency,
        effective_at=at if immediate else subscription.current_period_end,
        immediate=immediate,
        lines=tuple(lines),
        amount_due_now_minor=sum(line.amount_minor for line in lines),
        next_recurring_amount_minor=next_recurring,
        summary=summary,
        current_recurring_amount_minor=_current(subscription).recurring_amount_minor,
        notes=tuple(notes or ()),
        recurring_interval=recurring_interval or subscription.interval,
        current_interval=subscription.interval,
    )


def _seats_assigned(subscription: Subscription) -> int:
    assigned = subscription.__dict__.get(_ASSIGNED)
    if assigned is None:
        assigned = SeatAssignment.objects.filter(subscription=subscription).count()
    return assigned


def _cancel_pending(subscription: Subscription, kinds: tuple[str, ...], at: datetime, **payload_match) -> int:
    count = 0
    for change in _pending(subscription):
        if change.kind in kinds and all(str(change.payload.get(k)) == str(v) for k, v in payload_match.items()):
            change.canceled_at = at
            change.save(update_fields=["canceled_at"])
            count += 1
    return count


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
        raise SeatsBelowCommitment(
            f"Your annual plan commits to {seats_phrase(subscription.committed_seats)} until "
            f"{format_day(subscription.current_period_end)}; you can lower it from then on."
        )


# --- the apply engine ------------------------------------------------------------------------------------------


def _apply(
    *,
    kind: str,
    subscription_id: int,
    expected_version: int,
    idempotency_key: str | None,
    expected_amount_due_minor: int | None,
    actor: User | None,
    actor_kind: str | None,
    at: datetime | None,
    reason: str = "",
    plan: Callable[[Subscription, datetime], _Plan],
) -> SubscriptionChange:
    at = _now(at)
    with transaction.atomic():
        subscription = _load(subscription_id, lock=True, at=at)
        if idempotency_key:
            existing = SubscriptionChange.objects.filter(
                subscription=subscription, idempotency_key=idempotency_key
            ).first()
            if existing is not None:
                if existing.kind != kind:
                    raise IdempotencyKeyReused("This idempotency key was already used for a different change.")
                return existing
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise StalePreview(field="version")
        if subscription.version != expected_version:
            raise StalePreview()
        computed = plan(subscription, at)
        preview = computed.preview
        if expected_amount_due_minor is not None and expected_amount_due_minor != preview.amount_due_now_minor:
            raise StalePreview(
                "The amount due changed since your preview (a new day started). Please review and confirm again."
            )
        extra_after = computed.write(subscription, at, actor) or {}
        subscription.version += 1
        subscription.save()
        change = SubscriptionChange.objects.create(
            subscription=subscription,
            kind=kind,
            idempotency_key=idempotency_key or None,
            actor=actor,
            result=preview.to_dict(),
            amount_due_now_minor=preview.amount_due_now_minor,
            currency=preview.currency,
            effective_at=preview.effective_at,
        )
        audit_record(
            customer=subscription.customer,
            actor=actor,
            actor_kind=actor_kind,
            action=computed.audit_action,
            obj=subscription,
            summary=preview.summary,
            before=computed.before,
            after={**computed.after, **extra_after, "change_id": change.pk, "version": subscription.version},
            reason=reason,
        )
        subscription_event_record(subscription, change=kind)
        entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger=f"subscription.{kind}")
    return change


# --- seats -----------------------------------------------------------------------------------------------------


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
            kind=Kind.SEATS,
            subscription=subscription,
            at=at,
            immediate=True,
            lines=[],
            next_recurring=_replace_seats(projected_other, seats).recurring_amount_minor,
            recurring_interval=projected_other.interval,
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
            if delta > 0:
                description = (
                    f"{package.name} — {seats_phrase(delta, adjective='additional')}, "
                    f"{format_period(start, end)} (prorated)"
                )
            else:
                description = (
                    f"{package.name} — {seats_phrase(-delta)} removed, unused time {format_period(start, end)}"
                )
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
        summary = f"Change from {current} to {seats_phrase(seats)} on {format_day(subscription.current_period_end)}"

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
        kind=Kind.SEATS,
        subscription=subscription,
        at=at,
        immediate=immediate,
        lines=lines,
        next_recurring=next_terms.recurring_amount_minor,
        recurring_interval=next_terms.interval,
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
    from dataclasses import replace

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
    *,
    subscription_id: int,
    seats: int,
    expected_version: int,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor: User | None,
    actor_kind: str | None = None,
    at: datetime | None = None,
    reason: str = "",
) -> SubscriptionChange:
    """Apply a seat change previewed with `subscription_change_seats_preview` (see the module docstring)."""
    return _apply(
        kind=Kind.SEATS,
        subscription_id=subscription_id,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        expected_amount_due_minor=expected_amount_due_minor,
        actor=actor,
        actor_kind=actor_kind,
        at=at,
        reason=reason,
        plan=lambda sub, when: _plan_seats(sub, when, seats),
    )


# --- package (and interval) ------------------------------------------------------------------------------------


_ADDON_FOR = Package.addon_for.through  # from_package: the add-on, to_package: a base package it attaches to
_CHANGE_TARGETS = Package.change_targets.through  # from_package → to_package a subscriber may move to


def _resolve_package(package_slug) -> Package:
    if not isinstance(package_slug, str) or not package_slug:
        raise UnknownPackage("Choose a package.")
    package = Package.objects.filter(slug=package_slug).first()
    if package is None:
        raise UnknownPackage(f"There is no package called “{package_slug}”.")
    return package


def _offered_price(price: Price | None, package: Package, interval: str) -> Price | None:
    # A package sells an interval only if it lists it, whatever prices exist.
    return price if price is not None and interval in (package.intervals or []) else None


def _catalog_offer(
    subscription: Subscription, *, slug: str, interval: str, also_package_ids: tuple[int, ...] = ()
) -> tuple[Price | None, dict[int, Price]]:
    """One query for what a package or add-on change reads from the catalog: the active price, in the
    subscription's currency and `interval`, of the package called `slug` (with the package, its flat-fee SKU, and
    whether it is a change target of the subscription's package / attaches to it as an add-on / how many of the live
    add-ons attach to it), and the active prices of `also_package_ids` (add-ons to re-price), by package id.

    (None, …) when `slug` has no such price: the caller then resolves the package by itself to say what is wrong.
    """
    live_addon_ids = {addon.package_id for addon in _live_addons(subscription)}
    addons_attaching = (
        _ADDON_FOR.objects.filter(to_package_id=OuterRef("package_id"), from_package_id__in=live_addon_ids)
        .values("to_package_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    which = Q(package__slug=slug)
    if also_package_ids:
        which |= Q(package_id__in=also_package_ids)
    rows = (
        Price.objects.filter(which, currency=subscription.currency, interval=interval, is_active=True)
        .select_related("package")
        .annotate(
            **sku_annotations(package_ref="package_id", kinds=_ADDON_SKUS),
            is_change_target=Exists(
                _CHANGE_TARGETS.objects.filter(
                    from_package_id=subscription.package_id, to_package_id=OuterRef("package_id")
                )
            ),
            attaches_to_current=Exists(
                _ADDON_FOR.objects.filter(from_package_id=OuterRef("package_id"), to_package_id=subscription.package_id)
            ),
            live_addons_attaching=Coalesce(Subquery(addons_attaching), 0),
        )
        .order_by("package_id", "-created_at", "-pk")  # one active price per package/currency/interval anyway
    )
    prices: dict[int, Price] = {}
    for row in rows:
        sku_remember(row.package, row, kinds=_ADDON_SKUS)
        prices.setdefault(row.package_id, row)
    named = next((price for price in prices.values() if price.package.slug == slug), None)
    return named, prices


def _is_change_target(package: Package, target: Package) -> bool:
    return _CHANGE_TARGETS.objects.filter(from_package_id=package.pk, to_package_id=target.pk).exists()


def _attaches(addon: Package, base: Package) -> bool:
    return _ADDON_FOR.objects.filter(from_package_id=addon.pk, to_package_id=base.pk).exists()


def _interval_label(interval: str) -> str:
    return "annual" if interval == Interval.YEAR else "monthly"


def _plan_package(subscription: Subscription, at: datetime, package_slug, interval, seats) -> _Plan:
    _require_changeable(subscription, at)
    if not isinstance(package_slug, str) or not package_slug:
        raise UnknownPackage("Choose a package.")
    current_package = subscription.package
    current_terms = _current(subscription)
    interval = interval or subscription.interval
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
    every_addon_attaches = price.live_addons_attaching == len({a.package.pk for a in current_terms.addons})
    new_seats = max(subscription.seats, target.min_seats) if seats is None else _validate_seat_number(seats)
    _validate_seat_bounds(target, new_seats)
    if new_seats < subscription.seats:
        _validate_not_below_assigned(subscription, new_seats)

    # Add-ons follow the subscription: re-priced for the new interval, or refused if not offered there.
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

    # Upgrade or downgrade? A longer interval is a bigger commitment: immediate. A shorter one waits for the end of
    # the (annual) term. Same interval: compare what a period costs.
    if interval != subscription.interval:
        immediate = interval == Interval.YEAR
    else:
        is_downgrade = new_terms.base_amount_minor < current_terms.base_amount_minor
        immediate = not is_downgrade or current_package.downgrade_timing == DowngradeTiming.IMMEDIATE
    if immediate and new_seats < subscription.seats:
        _validate_commitment(subscription, new_seats)

    lines: list[PreviewLine] = []
    new_period = None
    if immediate:
        period_end = subscription.current_period_end
        if interval != subscription.interval and _chargeable(subscription):
            # A new annual term starts on the change date: credit what is left of the old period, charge the new one.
            # (During a trial the trial keeps running; the first annual term starts when it ends.)
            start_day = datetime.combine(utc_date(at), time.min, tzinfo=UTC)
            new_period = (start_day, compute_period_end(start_day, interval))
        if _chargeable(subscription):
            factor = _factor(subscription, at)
            old_sku = sku_for(current_package, SkuKind.RECURRING_FLAT)
            new_sku = sku_for(target, SkuKind.RECURRING_FLAT)
            old_label = f"{current_package.name} ({seats_phrase(subscription.seats)})"
            new_label = f"{target.name} ({seats_phrase(new_seats)})"
            old_amount = current_terms.base_amount_minor
            lines.append(
                _line(
                    description=f"Unused time on {old_label}, {format_period(at, period_end)}",
                    start=at,
                    end=period_end,
                    quantity=1,
                    unit_amount_minor=-old_amount,
                    amount_minor=-prorate(old_amount, factor),
                    proration=True,
                    sku=old_sku,
                )
            )
            if new_period is None:
                lines.append(
                    _line(
                        description=f"{new_label}, {format_period(at, period_end)} (prorated)",
                        start=at,
                        end=period_end,
                        quantity=1,
                        unit_amount_minor=new_terms.base_amount_minor,
                        amount_minor=prorate(new_terms.base_amount_minor, factor),
                        proration=True,
                        sku=new_sku,
                    )
                )
            else:
                lines.append(
                    _line(
                        description=f"{new_label}, {_interval_label(interval)}, {format_period(*new_period)}",
                        start=new_period[0],
                        end=new_period[1],
                        quantity=1,
                        unit_amount_minor=new_terms.base_amount_minor,
                        amount_minor=new_terms.base_amount_minor,
                        proration=False,
                        sku=new_sku,
                    )
                )
                for old_addon, new_addon in zip(current_terms.addons, new_terms.addons, strict=True):
                    addon_sku = sku_for(old_addon.package, SkuKind.RECURRING_FLAT)
                    lines.append(
                        _line(
                            description=f"Unused time on {old_addon.package.name}, {format_period(at, period_end)}",
                            start=at,
                            end=period_end,
                            quantity=1,
                            unit_amount_minor=-old_addon.amount_minor,
                            amount_minor=-prorate(old_addon.amount_minor, factor),
                            proration=True,
                            sku=addon_sku,
                        )
                    )
                    lines.append(
                        _line(
                            description=f"{new_addon.package.name}, {format_period(*new_period)}",
                            start=new_period[0],
                            end=new_period[1],
                            quantity=new_addon.quantity,
                            unit_amount_minor=new_addon.flat_amount_minor,
                            amount_minor=new_addon.amount_minor,
                            proration=False,
                            sku=addon_sku,
                        )
                    )
        next_terms = new_terms
        for change in _pending(subscription):
            if change.kind == ScheduledChangeKind.REMOVE_ADDON:
                next_terms = _apply_scheduled(next_terms, change, subscription)
    else:
        next_terms = new_terms
        for change in _pending(subscription):
            if change.kind == ScheduledChangeKind.REMOVE_ADDON:
                next_terms = _apply_scheduled(next_terms, change, subscription)

    pending_replaced = [
        c for c in _pending(subscription) if c.kind in (ScheduledChangeKind.SEATS, ScheduledChangeKind.PACKAGE)
    ]
    notes = []
    if pending_replaced:
        notes.append("This replaces the seat or package change you had scheduled.")
    if new_seats != subscription.seats:
        notes.append(f"Your seats change from {subscription.seats} to {new_seats}.")
    what = target.name if target.pk != current_package.pk else f"{_interval_label(interval)} billing"
    if target.pk != current_package.pk and interval != subscription.interval:
        what = f"{target.name} with {_interval_label(interval)} billing"
    if immediate:
        summary = f"Move to {what}, starting now"
    else:
        summary = f"Move to {what} on {format_day(subscription.current_period_end)}"
    before = {
        "package": current_package.slug,
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

    def write(sub: Subscription, when: datetime, actor) -> dict:
        _cancel_pending(sub, (ScheduledChangeKind.SEATS, ScheduledChangeKind.PACKAGE), when)
        if not immediate:
            scheduled = ScheduledChange.objects.create(
                subscription=sub,
                kind=ScheduledChangeKind.PACKAGE,
                payload={
                    "package_id": target.pk,
                    "package": target.slug,
                    "price_id": price.pk,
                    "interval": interval,
                    "flat_amount_minor": price.flat_amount_minor,
                    "seat_amount_minor": price.seat_amount_minor,
                    "included_seats": target.included_seats,
                    # Explicitly chosen seats, or None to keep the count at renewal (raised to the minimum).
                    "seats": new_seats if seats is not None else None,
                    "min_seats": target.min_seats,
                    "addon_prices": addon_prices,
                },
                effective_at=sub.current_period_end,
                created_by=actor,
            )
            return {"scheduled_change_id": scheduled.pk}
        _ledger(sub, seats_from=sub.seats, seats_to=new_seats, reason="package change", actor=actor, at=when)
        sub.package = target
        sub.price = price
        sub.flat_amount_minor = price.flat_amount_minor
        sub.seat_amount_minor = price.seat_amount_minor
        sub.included_seats = target.included_seats
        sub.seats = new_seats
        interval_changed = sub.interval != interval
        sub.interval = interval
        if new_period is not None:
            sub.current_period_start, sub.current_period_end = new_period
            sub.billing_anchor = new_period[0]  # a new term: its boundaries count from its first day
        if interval_changed:
            sub.committed_seats = new_seats if interval == Interval.YEAR else 0
            for old_addon, new_addon in zip(current_terms.addons, new_terms.addons, strict=True):
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
        return {}

    preview = _preview(
        kind=Kind.PACKAGE,
        subscription=subscription,
        at=at,
        immediate=immediate,
        lines=lines,
        next_recurring=next_terms.recurring_amount_minor,
        recurring_interval=next_terms.interval,
        summary=summary,
        notes=notes,
    )
    return _Plan(preview, write, "subscription.package_changed", before, after)


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
    subscription_id: int,
    package_slug: str,
    interval: str | None = None,
    seats: int | None = None,
    expected_version: int,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor: User | None,
    actor_kind: str | None = None,
    at: datetime | None = None,
    reason: str = "",
) -> SubscriptionChange:
    """Apply a package/interval change previewed with `subscription_change_package_preview`."""
    return _apply(
        kind=Kind.PACKAGE,
        subscription_id=subscription_id,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        expected_amount_due_minor=expected_amount_due_minor,
        actor=actor,
        actor_kind=actor_kind,
        at=at,
        reason=reason,
        plan=lambda sub, when: _plan_package(sub, when, package_slug, interval, seats),
    )


# --- add-ons ---------------------------------------------------------------------------------------------------


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
            kind=Kind.ADD_ADDON,
            subscription=subscription,
            at=at,
            immediate=True,
            lines=[],
            next_recurring=next_terms.recurring_amount_minor,
            recurring_interval=next_terms.interval,
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
                description=f"{addon.name}, {format_period(at, end)} (prorated)",
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
        kind=Kind.ADD_ADDON,
        subscription=subscription,
        at=at,
        immediate=True,
        lines=lines,
        next_recurring=next_recurring,
        recurring_interval=projected.interval,
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
    if already:
        raise NoChange(
            f"{addon.name} is already scheduled to end on {format_day(subscription.current_period_end)}.",
            field="addon",
        )
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
                description=f"Unused time on {addon.name}, {format_period(at, end)}",
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

    when_text = "now" if immediate else f"on {format_day(subscription.current_period_end)}"
    preview = _preview(
        kind=Kind.REMOVE_ADDON,
        subscription=subscription,
        at=at,
        immediate=immediate,
        lines=lines,
        next_recurring=next_recurring,
        recurring_interval=projected.interval,
        summary=f"Remove {addon.name} {when_text}",
    )
    return _Plan(preview, write, "subscription.addon_removed", {"addon": addon.slug}, {"addon": None})


def subscription_addon_add_preview(
    *, subscription_id: int, addon_slug: str, at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview adding an add-on: it starts now, prorated to the period end."""
    at = _now(at)
    return _plan_addon_add(_load(subscription_id, subscription=subscription, at=at), at, addon_slug).preview


def subscription_addon_add_apply(
    *,
    subscription_id: int,
    addon_slug: str,
    expected_version: int,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor: User | None,
    actor_kind: str | None = None,
    at: datetime | None = None,
) -> SubscriptionChange:
    return _apply(
        kind=Kind.ADD_ADDON,
        subscription_id=subscription_id,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        expected_amount_due_minor=expected_amount_due_minor,
        actor=actor,
        actor_kind=actor_kind,
        at=at,
        plan=lambda sub, when: _plan_addon_add(sub, when, addon_slug),
    )


def subscription_addon_remove_preview(
    *, subscription_id: int, addon_slug: str, at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview removing an add-on: at the period end, no refund (unless the add-on says immediate)."""
    at = _now(at)
    return _plan_addon_remove(_load(subscription_id, subscription=subscription, at=at), at, addon_slug).preview


def subscription_addon_remove_apply(
    *,
    subscription_id: int,
    addon_slug: str,
    expected_version: int,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor: User | None,
    actor_kind: str | None = None,
    at: datetime | None = None,
) -> SubscriptionChange:
    return _apply(
        kind=Kind.REMOVE_ADDON,
        subscription_id=subscription_id,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        expected_amount_due_minor=expected_amount_due_minor,
        actor=actor,
        actor_kind=actor_kind,
        at=at,
        plan=lambda sub, when: _plan_addon_remove(sub, when, addon_slug),
    )


# --- cancel at period end / undo -------------------------------------------------------------------------------

MAX_REASON_LENGTH = 2000


def _plan_cancel(subscription: Subscription, at: datetime, reason) -> _Plan:
    _require_changeable(subscription, at)
    if not isinstance(reason, str):
        raise CancellationError("The reason must be text.", field="reason")
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise CancellationError(f"Please keep the reason under {MAX_REASON_LENGTH} characters.", field="reason")
    if subscription.cancel_at_period_end:
        raise CancellationError(
            f"Your subscription is already set to end on {format_day(subscription.current_period_end)}."
        )

    def write(sub: Subscription, when: datetime, actor) -> dict:
        sub.cancel_at_period_end = True
        sub.cancel_reason = reason
        return {}

    preview = _preview(
        kind=Kind.CANCEL,
        subscription=subscription,
        at=at,
        immediate=False,
        lines=[],
        next_recurring=0,
        summary=f"Your subscription ends on {format_day(subscription.current_period_end)}; "
        "you keep everything until then",
    )
    return _Plan(
        preview,
        write,
        "subscription.cancel_scheduled",
        {"cancel_at_period_end": False},
        {"cancel_at_period_end": True, "reason": reason},
    )


def _plan_reactivate(subscription: Subscription, at: datetime) -> _Plan:
    _require_changeable(subscription, at)
    if not subscription.cancel_at_period_end:
        raise CancellationError("Your subscription is not set to end, so there is nothing to undo.")
    projected = _projected(subscription)

    def write(sub: Subscription, when: datetime, actor) -> dict:
        sub.cancel_at_period_end = False
        sub.cancel_reason = ""
        return {}

    preview = _preview(
        kind=Kind.REACTIVATE,
        subscription=subscription,
        at=at,
        immediate=True,
        lines=[],
        next_recurring=projected.recurring_amount_minor,
        recurring_interval=projected.interval,
        summary=f"Your subscription continues and renews on {format_day(subscription.current_period_end)}",
    )
    return _Plan(
        preview,
        write,
        "subscription.cancel_undone",
        {"cancel_at_period_end": True, "reason": subscription.cancel_reason},
        {"cancel_at_period_end": False},
    )


def subscription_cancel_preview(
    *, subscription_id: int, reason: str = "", at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview canceling at the period end: nothing is refunded and nothing renews."""
    at = _now(at)
    return _plan_cancel(_load(subscription_id, subscription=subscription, at=at), at, reason).preview


def subscription_cancel_apply(
    *,
    subscription_id: int,
    reason: str = "",
    expected_version: int,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor: User | None,
    actor_kind: str | None = None,
    at: datetime | None = None,
) -> SubscriptionChange:
    """Set the subscription to end at its period end (renewal then moves it active → canceled → ended)."""
    return _apply(
        kind=Kind.CANCEL,
        subscription_id=subscription_id,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        expected_amount_due_minor=expected_amount_due_minor,
        actor=actor,
        actor_kind=actor_kind,
        at=at,
        reason=reason if isinstance(reason, str) else "",
        plan=lambda sub, when: _plan_cancel(sub, when, reason),
    )


def subscription_reactivate_preview(
    *, subscription_id: int, at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview undoing a scheduled cancellation."""
    at = _now(at)
    return _plan_reactivate(_load(subscription_id, subscription=subscription, at=at), at).preview


def subscription_reactivate_apply(
    *,
    subscription_id: int,
    expected_version: int,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor: User | None,
    actor_kind: str | None = None,
    at: datetime | None = None,
) -> SubscriptionChange:
    """Undo a cancellation at period end; the subscription renews as before."""
    return _apply(
        kind=Kind.REACTIVATE,
        subscription_id=subscription_id,
        expected_version=expected_version,
        idempotency_key=idempotency_key,
        expected_amount_due_minor=expected_amount_due_minor,
        actor=actor,
        actor_kind=actor_kind,
        at=at,
        plan=lambda sub, when: _plan_reactivate(sub, when),
    )
