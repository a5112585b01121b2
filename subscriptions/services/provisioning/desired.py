"""What customers are entitled to (desired): from their entitling subscriptions, add-ons and seat assignments."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from subscriptions.models import (
    LIVE_STATUSES,
    Customer,
    EntitlementValueKind,
    Package,
    PackageComponent,
    SeatAssignment,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.models.provisioning import EntitlementKind

# (feature key, user id) — user id is None for customer-wide features, set for "this person holds a seat".
EntitlementKey = tuple[str, int | None]

SEAT_FEATURE_PREFIX = "seat:"


@dataclass(frozen=True)
class DesiredEntitlement:
    kind: str
    value: int
    granted_by: tuple[str, ...] = ()
    package_id: int | None = None


def _entitling_subscriptions_q(now: datetime) -> Q:
    # Live subscriptions entitle; so does a canceled one until its paid period ends (the billing run marks it ended).
    return Q(status__in=LIVE_STATUSES) | Q(
        status=SubscriptionStatus.CANCELED, ended_at__isnull=True, current_period_end__gt=now
    )


def desired_for_customers(customer_ids: Iterable[int], *, now: datetime) -> dict[int, dict]:
    """Desired entitlements of many customers with a constant number of queries (the drift check's hot path).

    Rules: `per_seat` SKUs grant a seat count equal to the subscription's seats (several subscriptions add up);
    limits take the largest value any source grants (value x component quantity x add-on quantity); booleans are
    on when any source grants them; every seat assignment on an entitling subscription grants that person a seat of
    the subscription's package (feature key `seat:<package slug>`).
    """
    customer_ids = list(customer_ids)
    result: dict[int, dict] = {customer_id: {} for customer_id in customer_ids}
    if not customer_ids:
        return result
    subscriptions = list(
        Subscription.objects.filter(customer_id__in=customer_ids)
        .filter(_entitling_subscriptions_q(now))
        .values_list("id", "customer_id", "package_id", "seats")
    )
    if not subscriptions:
        return result
    subscription_ids = [row[0] for row in subscriptions]
    addons = list(
        SubscriptionAddon.objects.filter(subscription_id__in=subscription_ids, started_at__lte=now)
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=now))
        .values_list("id", "subscription_id", "package_id", "quantity")
    )
    package_ids = {row[2] for row in subscriptions} | {row[2] for row in addons}
    components: dict[int, list[tuple[str, str, int | None, int]]] = defaultdict(list)
    for package_id, key, kind, value, quantity in (
        PackageComponent.objects.filter(package_id__in=package_ids)
        .exclude(sku__feature_key="")
        .exclude(sku__feature_value_kind="")
        .values_list("package_id", "sku__feature_key", "sku__feature_value_kind", "sku__feature_value", "quantity")
    ):
        components[package_id].append((key, kind, value, quantity))
    slugs = dict(Package.objects.filter(id__in={row[2] for row in subscriptions}).values_list("id", "slug"))
    assignments: dict[int, list[int]] = defaultdict(list)
    for subscription_id, user_id in SeatAssignment.objects.filter(subscription_id__in=subscription_ids).values_list(
        "subscription_id", "user_id"
    ):
        assignments[subscription_id].append(user_id)
    addons_by_subscription: dict[int, list[tuple]] = defaultdict(list)
    for addon in addons:
        addons_by_subscription[addon[1]].append(addon)

    # Accumulate per customer: key -> [kind, value, sources, package_id]; seats per (key, subscription) first.
    for subscription_id, customer_id, package_id, seats in subscriptions:
        desired = result[customer_id]
        sources = [(f"subscription:{subscription_id}", package_id, 1)]
        sources += [
            (f"addon:{a_id}", a_package, a_qty) for a_id, _, a_package, a_qty in addons_by_subscription[subscription_id]
        ]
        seat_grants: dict[str, tuple[int, list[str]]] = {}
        for source, source_package, source_quantity in sources:
            for key, kind, value, quantity in components[source_package]:
                if kind == EntitlementValueKind.PER_SEAT:
                    # Within one subscription, seats are not counted twice if an add-on also grants them.
                    best, granted = seat_grants.get(key, (0, []))
                    seat_grants[key] = (max(best, seats), [*granted, source])
                    continue
                if kind == EntitlementValueKind.LIMIT:
                    amount = (value or 0) * quantity * source_quantity
                    entry_kind = EntitlementKind.LIMIT
                else:
                    amount = 1
                    entry_kind = EntitlementKind.BOOLEAN
                current = desired.get((key, None))
                if current is None:
                    desired[(key, None)] = DesiredEntitlement(entry_kind, amount, (source,))
                else:
                    desired[(key, None)] = DesiredEntitlement(
                        current.kind, max(current.value, amount), (*current.granted_by, source)
                    )
        for key, (amount, granted) in seat_grants.items():
            current = desired.get((key, None))
            if current is None or current.kind != EntitlementKind.SEATS:
                desired[(key, None)] = DesiredEntitlement(EntitlementKind.SEATS, amount, tuple(granted))
            else:
                desired[(key, None)] = DesiredEntitlement(
                    EntitlementKind.SEATS, current.value + amount, (*current.granted_by, *granted)
                )
        seat_key = f"{SEAT_FEATURE_PREFIX}{slugs.get(package_id, package_id)}"
        for user_id in assignments[subscription_id]:
            current = desired.get((seat_key, user_id))
            granted_by = (
                (f"subscription:{subscription_id}",)
                if current is None
                else (
                    *current.granted_by,
                    f"subscription:{subscription_id}",
                )
            )
            desired[(seat_key, user_id)] = DesiredEntitlement(EntitlementKind.USER_SEAT, 1, granted_by, package_id)
    return result


def entitlements_desired(
    customer: Customer | int, *, now: datetime | None = None
) -> dict[EntitlementKey, DesiredEntitlement]:
    """What `customer` is entitled to right now, from all of its entitling subscriptions and their add-ons."""
    customer_id = customer if isinstance(customer, int) else customer.pk
    return desired_for_customers([customer_id], now=now or timezone.now())[customer_id]
