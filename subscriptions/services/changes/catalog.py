"""What a package or add-on change reads from the catalog: offered prices (one query), change targets and which add-ons
attach to which package."""

from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce

from subscriptions.exceptions import UnknownPackage
from subscriptions.models import (
    Interval,
    Package,
    Price,
    Subscription,
)
from subscriptions.services.changes.loading import _ADDON_SKUS, _live_addons
from subscriptions.services.terms import (
    sku_annotations,
    sku_remember,
)

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
