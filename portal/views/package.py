"""The package page: compare with the alternatives, change package or interval, add-ons, cancel and undo."""

from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.shortcuts import render

from portal.inputs import id_from_request
from portal.page_cache import page_data
from portal.permissions import PACKAGE, customer_view, get_for_customer
from portal.views.offers import offers_for
from subscriptions.models import (
    LIVE_STATUSES,
    Package,
    Price,
    ScheduledChange,
    Subscription,
    SubscriptionAddon,
)


def live_subscription(request, *queryset_options) -> Subscription:
    """The subscription a page acts on: `?subscription_id=` when given, else the customer's first live one."""
    qs = Subscription.objects.filter(status__in=LIVE_STATUSES).select_related("package")
    for option in queryset_options:
        qs = qs.prefetch_related(option)
    raw = request.GET.get("subscription_id", "")
    pk = id_from_request(raw)
    if pk is not None:
        return get_for_customer(qs, request.customer, pk=pk)
    subscription = qs.filter(customer=request.customer).order_by("created_at").first()
    if subscription is None:
        raise Http404("No live subscription.")
    return subscription


def _active_prices(currency: str | None = None) -> QuerySet[Price]:
    prices = Price.objects.filter(is_active=True)
    return prices.filter(currency=currency) if currency else prices


@customer_view(PACKAGE)
def package_page(request):
    """Within the query budget whatever the size of the catalog: the subscription with its package's prices (2),
    the alternatives and add-ons in one query with their prices (2), live add-ons (1), scheduled changes (1);
    cached under the customer's data version (portal/page_cache.py)."""
    context = page_data(
        request, "package", lambda: _package_context(request), parts=(request.GET.get("subscription_id", ""),)
    )
    return render(request, "portal/package.html", {**context, "customer": request.customer})


def _package_context(request) -> dict:
    try:
        subscription = live_subscription(request, Prefetch("package__prices", queryset=_active_prices()))
    except Http404:
        return {"subscription": None}
    current = subscription.package
    others = list(
        Package.objects.filter(is_active=True)
        .filter(Q(is_addon=False, change_sources=current) | Q(is_addon=True, addon_for=current))
        .exclude(pk=current.pk)
        .distinct()
        .prefetch_related(Prefetch("prices", queryset=_active_prices(subscription.currency)))
        .order_by("display_order", "name")
    )
    alternatives = [p for p in others if not p.is_addon]
    offers = offers_for([current, *alternatives], currency=subscription.currency, seats=subscription.seats)
    live_addons = list(
        SubscriptionAddon.objects.filter(subscription=subscription, ended_at__isnull=True).select_related("package")
    )
    live_ids = {a.package_id for a in live_addons}
    available_addons = [
        o
        for o in offers_for([p for p in others if p.is_addon], currency=subscription.currency, seats=1)
        if o.package.pk not in live_ids
    ]
    scheduled = list(
        ScheduledChange.objects.filter(subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True)
    )
    return {
        "subscription": subscription,
        "current_offer": offers[0] if offers and offers[0].package.pk == current.pk else None,
        "alternatives": [o for o in offers if o.package.pk != current.pk],
        "live_addons": live_addons,
        "available_addons": available_addons,
        "scheduled": scheduled,
    }
