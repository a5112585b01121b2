"""What a change reads about the subscription, loaded once: the row (renewed on demand when its period is over),
its package SKUs, live add-ons, pending scheduled changes and seats assigned. A plan never queries them again."""

from datetime import datetime

from django.db.models import Count, OuterRef, Prefetch, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from subscriptions.exceptions import SubscriptionNotChangeable
from subscriptions.models import (
    Package,
    ScheduledChange,
    ScheduledChangeKind,
    SeatAssignment,
    SkuKind,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.prebuilt import prebuilt
from subscriptions.services.lifecycle import subscription_renew
from subscriptions.services.terms import (
    Terms,
    sku_annotations,
    sku_remember,
    terms_apply_scheduled,
    terms_current,
    terms_projected,
)


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


def subscriptions_for_change(*, lock: bool = False, skus: bool = True) -> QuerySet[Subscription]:
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

    Without `skus` the package's and add-ons' SKUs are not annotated (ten correlated subqueries, most of a seat
    preview's SQL compile time): the caller hands them over with `change_skus_remember` before the preview, e.g.
    from a per-package cache, else `sku_for` reads them with a query per package.

    The shape is built once per process (`subscriptions.prebuilt`: its ten SKU subqueries took ~8 ms of CPU to
    build per preview and per apply); each call returns a clone.
    """
    return _change_shape(lock, skus)


@prebuilt
def _change_shape(lock: bool, skus: bool) -> QuerySet[Subscription]:
    queryset = Subscription.objects.select_related("package", "customer")
    if skus:
        queryset = queryset.annotate(**sku_annotations(package_ref="package_id", kinds=_PACKAGE_SKUS))
    if lock:
        return queryset.select_for_update(of=("self",))
    assigned = (
        SeatAssignment.objects.filter(subscription_id=OuterRef("pk"))
        .values("subscription_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return queryset.annotate(**{_ASSIGNED: Coalesce(Subquery(assigned), 0)}).prefetch_related(
        Prefetch("addons", queryset=_live_addons_queryset(skus=skus), to_attr=_LIVE_ADDONS),
        Prefetch(
            "scheduled_changes",
            queryset=ScheduledChange.objects.filter(applied_at__isnull=True, canceled_at__isnull=True).order_by(
                "effective_at", "pk"
            ),
            to_attr=_PENDING,
        ),
    )


def _live_addons_queryset(*, skus: bool = True) -> QuerySet[SubscriptionAddon]:
    """Live add-ons with their packages (and their flat-fee SKUs: correlated subqueries), built once per process."""
    return _live_addons_shape(skus)


@prebuilt
def _live_addons_shape(skus: bool) -> QuerySet[SubscriptionAddon]:
    queryset = SubscriptionAddon.objects.filter(ended_at__isnull=True).select_related("package").order_by("pk")
    if skus:
        queryset = queryset.annotate(**sku_annotations(package_ref="package_id", kinds=_ADDON_SKUS))
    return queryset


def change_package_ids(subscription: Subscription) -> set[int]:
    """The packages whose SKUs a change of `subscription` (loaded by `subscriptions_for_change`) reads — its own
    and its live add-ons' — and that the loading query did not annotate (`skus=False`): empty with the full shape."""
    annotated = f"sku_{SkuKind.RECURRING_FLAT}_code"
    rows = [subscription, *subscription.__dict__.get(_LIVE_ADDONS, ())]
    return {row.package_id for row in rows if annotated not in row.__dict__}


def change_skus_remember(subscription: Subscription, skus: dict[int, dict[str, tuple[str, str]]]) -> None:
    """Hand over the SKUs (`subscriptions.selectors.package_skus`: {package id: {kind: (code, tax category)}}) of
    `change_package_ids(subscription)`, so `sku_for` on its package and add-ons' packages needs no query."""
    packages = [subscription.package] + [addon.package for addon in subscription.__dict__.get(_LIVE_ADDONS, ())]
    for package in packages:
        if package.pk in skus:
            known = package.__dict__.setdefault("_sku_for", {})
            for kind, sku in skus[package.pk].items():
                known.setdefault(kind, sku)


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


def _seats_assigned(subscription: Subscription) -> int:
    assigned = subscription.__dict__.get(_ASSIGNED)
    if assigned is None:
        assigned = SeatAssignment.objects.filter(subscription=subscription).count()
    return assigned
