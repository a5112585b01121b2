"""What a subscription pays per period ("terms"), and the invoice-ready lines that describe it.

Billed seats = max(0, seats − included seats); recurring amount per period = flat fee + billed seats × seat price +
every live add-on's flat fee × quantity. Amounts come from the subscription's price snapshot (grandfathering), never
from the live catalog. Pure reads; no writes.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from subscriptions.models import (
    Package,
    PackageComponent,
    ScheduledChange,
    ScheduledChangeKind,
    SkuKind,
    Subscription,
    SubscriptionAddon,
)
from subscriptions.money import format_period


@dataclass(frozen=True)
class PreviewLine:
    """One line of a preview or an invoice: customer words up front, the SKU code for the small print."""

    description: str
    period_start: datetime
    period_end: datetime
    quantity: int
    unit_amount_minor: int
    amount_minor: int
    proration: bool
    sku_code: str
    tax_category: str

    def to_dict(self) -> dict:
        data = asdict(self)
        data["period_start"] = self.period_start.isoformat()
        data["period_end"] = self.period_end.isoformat()
        return data


@dataclass(frozen=True)
class AddonTerms:
    package: Package
    price_id: int
    flat_amount_minor: int
    quantity: int = 1
    addon_id: int | None = None

    @property
    def amount_minor(self) -> int:
        return self.flat_amount_minor * self.quantity


@dataclass(frozen=True)
class Terms:
    package: Package
    price_id: int
    interval: str
    currency: str
    flat_amount_minor: int
    seat_amount_minor: int
    included_seats: int
    seats: int
    addons: tuple[AddonTerms, ...] = field(default_factory=tuple)

    @property
    def billed_seats(self) -> int:
        return max(0, self.seats - self.included_seats)

    @property
    def base_amount_minor(self) -> int:
        """The package's own recurring amount (flat fee plus billed seats), without add-ons."""
        return self.flat_amount_minor + self.billed_seats * self.seat_amount_minor

    @property
    def recurring_amount_minor(self) -> int:
        return self.base_amount_minor + sum(addon.amount_minor for addon in self.addons)

    def addon_for(self, package_id: int) -> AddonTerms | None:
        return next((addon for addon in self.addons if addon.package.pk == package_id), None)


def terms_current(subscription: Subscription, *, addons: list[SubscriptionAddon] | None = None) -> Terms:
    """The terms the subscription pays right now (its snapshot and live add-ons).

    `addons`: the subscription's live add-ons (with their packages) when the caller has loaded them already."""
    if addons is None:
        addons = subscription.addons.filter(ended_at__isnull=True).select_related("package").order_by("pk")
    return terms_from(subscription, addons=sorted(addons, key=lambda addon: addon.pk))


def terms_from(subscription: Subscription, *, addons: Iterable[SubscriptionAddon]) -> Terms:
    """The subscription's terms with the given live add-ons (in id order, package loaded) — for callers that have
    prefetched them for many subscriptions at once (the billing run, batch renewal)."""
    return Terms(
        package=subscription.package,
        price_id=subscription.price_id,
        interval=subscription.interval,
        currency=subscription.currency,
        flat_amount_minor=subscription.flat_amount_minor,
        seat_amount_minor=subscription.seat_amount_minor,
        included_seats=subscription.included_seats,
        seats=subscription.seats,
        addons=tuple(
            AddonTerms(
                package=addon.package,
                price_id=addon.price_id,
                flat_amount_minor=addon.flat_amount_minor,
                quantity=addon.quantity,
                addon_id=addon.pk,
            )
            for addon in addons
        ),
    )


def scheduled_changes_pending(subscription: Subscription) -> list[ScheduledChange]:
    return list(
        subscription.scheduled_changes.filter(applied_at__isnull=True, canceled_at__isnull=True).order_by(
            "effective_at", "pk"
        )
    )


def terms_apply_scheduled(
    terms: Terms, change: ScheduledChange, *, packages: dict[int, Package] | None = None
) -> Terms:
    """The terms after one scheduled change takes effect (the same rule renewal applies).

    `packages`: the packages scheduled package changes move to, by id, when the caller has loaded them already."""
    payload = change.payload
    if change.kind == ScheduledChangeKind.SEATS:
        return _replace(terms, seats=int(payload["seats"]))
    if change.kind == ScheduledChangeKind.REMOVE_ADDON:
        package_id = int(payload["package_id"])
        return _replace(terms, addons=tuple(a for a in terms.addons if a.package.pk != package_id))
    if change.kind == ScheduledChangeKind.PACKAGE:
        package_id = int(payload["package_id"])
        package = (packages or {}).get(package_id) or Package.objects.get(pk=package_id)
        addon_prices = payload.get("addon_prices", {})
        addons = []
        for addon in terms.addons:
            repriced = addon_prices.get(str(addon.package.pk))
            if repriced:
                addon = AddonTerms(
                    package=addon.package,
                    price_id=int(repriced["price_id"]),
                    flat_amount_minor=int(repriced["flat_amount_minor"]),
                    quantity=addon.quantity,
                    addon_id=addon.addon_id,
                )
            addons.append(addon)
        return Terms(
            package=package,
            price_id=int(payload["price_id"]),
            interval=payload["interval"],
            currency=terms.currency,
            flat_amount_minor=int(payload["flat_amount_minor"]),
            seat_amount_minor=int(payload["seat_amount_minor"]),
            included_seats=int(payload["included_seats"]),
            seats=package_change_seats(terms.seats, payload),
            addons=tuple(addons),
        )
    raise ValueError(f"Unknown scheduled change kind {change.kind!r}")


def package_change_seats(current_seats: int, payload: dict) -> int:
    """Seats after a scheduled package change: the chosen count, else the current one, never below the minimum."""
    chosen = payload.get("seats")
    seats = int(chosen) if chosen is not None else current_seats
    return max(seats, int(payload.get("min_seats") or 0))


def terms_projected(
    subscription: Subscription,
    *,
    exclude_kinds: tuple[str, ...] = (),
    addons: list[SubscriptionAddon] | None = None,
    pending: list[ScheduledChange] | None = None,
    packages: dict[int, Package] | None = None,
) -> Terms:
    """The terms from the next period on: the current terms with every pending scheduled change applied.

    `addons`, `pending` (the pending scheduled changes, soonest first) and `packages` (see `terms_apply_scheduled`):
    what the caller has loaded already; each one not given is queried."""
    terms = terms_current(subscription, addons=addons)
    for change in scheduled_changes_pending(subscription) if pending is None else pending:
        if change.kind not in exclude_kinds:
            terms = terms_apply_scheduled(terms, change, packages=packages)
    return terms


def _replace(terms: Terms, **changes) -> Terms:
    from dataclasses import replace

    return replace(terms, **changes)


# --- lines -----------------------------------------------------------------------------------------------------


def seats_phrase(count: int, *, adjective: str = "") -> str:
    word = "seat" if count == 1 else "seats"
    return f"{count} {adjective + ' ' if adjective else ''}{word}"


def _components_by_sku_code(package: Package) -> list[PackageComponent]:
    # Prefetched components (the billing run prefetches "package__components__sku") are used as they are; otherwise
    # one query with their SKUs, kept on the instance: a preview asks for several kinds of the same package.
    prefetched = getattr(package, "_prefetched_objects_cache", {}).get("components")
    if prefetched is not None:
        return sorted(prefetched, key=lambda c: c.sku.code)
    cached = package.__dict__.get("_components_by_sku_code")
    if cached is None:
        cached = sorted(package.components.select_related("sku"), key=lambda c: c.sku.code)
        package.__dict__["_components_by_sku_code"] = cached
    return cached


def sku_for(package: Package, kind: str) -> tuple[str, str]:
    """(sku code, tax category) of the package's first component of `kind`, for small print and tax."""
    known = package.__dict__.get("_sku_for", {}).get(kind)
    if known is not None:
        return known
    components = _components_by_sku_code(package)
    for component in components:
        if component.sku.kind == kind:
            return component.sku.code, component.sku.tax_category
    if kind == SkuKind.RECURRING_PER_SEAT:
        return sku_for(package, SkuKind.RECURRING_FLAT)
    first = components[0].sku if components else None
    return (first.code, first.tax_category) if first else ("", "saas")


def _sku_field_subquery(*, package_ref: str, kind: str, field_name: str, default: str):
    # `sku_for(package, kind)` field by field, with the same fallbacks: a seat line without a per-seat SKU uses the
    # flat fee's; otherwise the first component (by SKU code); otherwise `default`.
    def first(of_kind: str | None):
        components = PackageComponent.objects.filter(package_id=OuterRef(package_ref))
        if of_kind:
            components = components.filter(sku__kind=of_kind)
        return Subquery(components.order_by("sku__code").values(f"sku__{field_name}")[:1])

    kinds = [kind] + ([SkuKind.RECURRING_FLAT] if kind == SkuKind.RECURRING_PER_SEAT else [])
    return Coalesce(*[first(k) for k in kinds], first(None), Value(default))


def sku_tax_category_subquery(*, package_ref: str, kind: str):
    """`sku_for(package, kind)[1]` as an SQL expression on the package id in `package_ref` (an OuterRef name), so a
    list of subscriptions or add-ons can carry each line's tax category without a query per row. Same fallbacks:
    a seat line without a per-seat SKU uses the flat fee's; otherwise the first component; otherwise "saas"."""
    return _sku_field_subquery(package_ref=package_ref, kind=kind, field_name="tax_category", default="saas")


def sku_annotations(*, package_ref: str, kinds: tuple[str, ...]) -> dict:
    """Annotations carrying `sku_for(package, kind)` for each of `kinds`, computed in the same query as the row that
    refers to the package (`package_ref`, e.g. "package_id"). Hand the row to `sku_remember` afterwards."""
    annotations = {}
    for kind in kinds:
        annotations[f"sku_{kind}_code"] = _sku_field_subquery(
            package_ref=package_ref, kind=kind, field_name="code", default=""
        )
        annotations[f"sku_{kind}_tax"] = _sku_field_subquery(
            package_ref=package_ref, kind=kind, field_name="tax_category", default="saas"
        )
    return annotations


def sku_remember(package: Package, row, *, kinds: tuple[str, ...]) -> None:
    """Keep on `package` what `sku_annotations` computed on `row`, so `sku_for(package, kind)` needs no query."""
    known = package.__dict__.setdefault("_sku_for", {})
    for kind in kinds:
        code = row.__dict__.get(f"sku_{kind}_code")
        if code is not None:
            known[kind] = (code, row.__dict__[f"sku_{kind}_tax"])


def full_period_line(
    description: str, period_start: datetime, period_end: datetime, quantity: int, unit_amount_minor: int, sku
) -> PreviewLine:
    """A line charged in full for its period (no proration): `quantity` × `unit_amount_minor`; `sku` is the
    (code, tax category) pair `sku_for` returns."""
    code, tax = sku
    return PreviewLine(
        description=description,
        period_start=period_start,
        period_end=period_end,
        quantity=quantity,
        unit_amount_minor=unit_amount_minor,
        amount_minor=quantity * unit_amount_minor,
        proration=False,
        sku_code=code,
        tax_category=tax,
    )


def terms_lines(terms: Terms, *, period_start: datetime, period_end: datetime, locale: str) -> list[PreviewLine]:
    """The full-period recurring lines for `terms`: flat fee, billed seats (if any), each add-on.

    Billing uses these to invoice a period (renewal); amounts are exact (no proration). The period in each description
    is written as `locale` (the customer's country, see subscriptions.money) writes dates.
    """
    period = format_period(period_start, period_end, locale)
    package = terms.package
    included = f" (includes {seats_phrase(terms.included_seats)})" if terms.included_seats else ""
    lines = [
        full_period_line(
            f"{package.name} plan{included}, {period}",
            period_start,
            period_end,
            1,
            terms.flat_amount_minor,
            sku_for(package, SkuKind.RECURRING_FLAT),
        )
    ]
    if terms.billed_seats:
        seats = seats_phrase(terms.billed_seats, adjective="additional")
        lines.append(
            full_period_line(
                f"{package.name} — {seats}, {period}",
                period_start,
                period_end,
                terms.billed_seats,
                terms.seat_amount_minor,
                sku_for(package, SkuKind.RECURRING_PER_SEAT),
            )
        )
    lines.extend(
        full_period_line(
            f"{addon.package.name}, {period}",
            period_start,
            period_end,
            addon.quantity,
            addon.flat_amount_minor,
            sku_for(addon.package, SkuKind.RECURRING_FLAT),
        )
        for addon in terms.addons
    )
    return lines


def subscription_recurring_lines(
    *, subscription: Subscription, period_start: datetime | None = None, period_end: datetime | None = None
) -> list[PreviewLine]:
    """The lines a full period of `subscription` costs, at its current terms (default: its current period)."""
    return terms_lines(
        terms_current(subscription),
        period_start=period_start or subscription.current_period_start,
        period_end=period_end or subscription.current_period_end,
        locale=subscription.customer.country,
    )
