"""Catalog validation: refuses a catalog a customer could not actually buy from, with specific messages.

Run by the admin on save (`catalog_validate(package=...)`) and by `manage.py check_catalog` (every package).
"""

from django.conf import settings

from subscriptions.exceptions import CatalogError
from subscriptions.models import Interval, Package, PackageComponent, Price, SkuKind

RECURRING_KINDS = (SkuKind.RECURRING_FLAT, SkuKind.RECURRING_PER_SEAT)


def catalog_validate(package: Package | None = None) -> list[str]:
    """Problems with `package` (or with every package when None), as sentences naming the package; [] when valid.

    Rules: every public active package offers at least one known interval, has a recurring component, and has an
    active price in each of `settings.ENABLED_CURRENCIES` for each interval it offers; an active package contains no
    inactive SKU; every SKU that grants a feature says in customer words what it is (`feature_label`); min seats ≤
    included seats ≤ max seats; add-ons attach only to base packages (and a public active
    add-on attaches to at least one); packages change only to base packages.
    """
    if package is not None and package.pk is None:
        return _validate_fields(package)
    packages = (
        [package]
        if package is not None
        else list(Package.objects.prefetch_related("addon_for", "change_targets").order_by("display_order", "name"))
    )
    ids = [p.pk for p in packages]
    components: dict[int, list] = {}
    for component in PackageComponent.objects.filter(package_id__in=ids).select_related("sku").order_by("pk"):
        components.setdefault(component.package_id, []).append(component)
    prices: set[tuple[int, str, str]] = set(
        Price.objects.filter(package_id__in=ids, is_active=True).values_list("package_id", "currency", "interval")
    )
    problems: list[str] = []
    for item in packages:
        problems += _validate_fields(item)
        problems += _validate_related(item, components.get(item.pk, []), prices)
    return problems


def catalog_assert_valid(package: Package | None = None) -> None:
    """Raise `CatalogError` carrying every problem (one per line) when the catalog is invalid."""
    problems = catalog_validate(package)
    if problems:
        raise CatalogError("\n".join(problems))


def _interval_label(interval: str) -> str:
    return "annual" if interval == Interval.YEAR else "monthly"


def _validate_fields(package: Package) -> list[str]:
    problems = []
    name = package.name or package.slug or "A package"
    intervals = package.intervals if isinstance(package.intervals, list) else None
    if intervals is None or any(i not in Interval.values for i in intervals):
        problems.append(f"{name}: billing intervals must be a list of “month” and/or “year”.")
    elif package.is_active and package.is_public and not intervals:
        problems.append(f"{name}: offers no billing interval (choose monthly, annual or both).")
    if package.min_seats > package.included_seats:
        problems.append(
            f"{name}: minimum seats ({package.min_seats}) is more than the included seats ({package.included_seats})."
        )
    if package.max_seats is not None and package.included_seats > package.max_seats:
        problems.append(
            f"{name}: included seats ({package.included_seats}) is more than the maximum seats ({package.max_seats})."
        )
    if package.max_seats is not None and package.min_seats > package.max_seats:
        problems.append(f"{name}: minimum seats ({package.min_seats}) is more than the maximum ({package.max_seats}).")
    return problems


def _validate_related(package: Package, components: list, prices: set[tuple[int, str, str]]) -> list[str]:
    problems = []
    name = package.name
    if package.is_active:
        for component in components:
            if not component.sku.is_active:
                problems.append(f"{name}: contains the inactive SKU {component.sku.code}.")
    for component in components:
        sku = component.sku
        if sku.feature_key and not sku.feature_label.strip():
            problems.append(
                f"{name}: the SKU {sku.code} grants “{sku.feature_key}” but has no feature label "
                "(how customers see the feature, e.g. “API calls per month”)."
            )
    if package.is_active and package.is_public:
        if not any(component.sku.kind in RECURRING_KINDS for component in components):
            problems.append(f"{name}: has no recurring component (add a recurring flat or per-seat SKU).")
        intervals = package.intervals if isinstance(package.intervals, list) else []
        for interval in intervals:
            if interval not in Interval.values:
                continue
            for currency in settings.ENABLED_CURRENCIES:
                if (package.pk, currency, interval) not in prices:
                    problems.append(f"{name}: no active price in {currency} for {_interval_label(interval)} billing.")
    attached_to = list(package.addon_for.all())
    if package.is_addon:
        for base in attached_to:
            if base.is_addon:
                problems.append(f"{name}: an add-on can only attach to base packages, not to the add-on {base.name}.")
        if package.is_active and package.is_public and not attached_to:
            problems.append(f"{name}: this add-on is not attached to any base package.")
    elif attached_to:
        problems.append(f"{name}: only add-ons can attach to other packages; mark it as an add-on or detach it.")
    for target in package.change_targets.all():
        if target.is_addon:
            problems.append(f"{name}: customers cannot change to the add-on {target.name}.")
    return problems
