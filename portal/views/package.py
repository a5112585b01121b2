"""The package page: compare with the alternatives, change package or interval, add-ons, cancel and undo."""

from django.db.models import Prefetch
from django.http import Http404
from django.shortcuts import render

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


def live_subscription(request) -> Subscription:
    """The subscription a page acts on: `?subscription_id=` when given, else the customer's first live one."""
    qs = Subscription.objects.filter(status__in=LIVE_STATUSES).select_related("package")
    raw = request.GET.get("subscription_id", "")
    if raw.isdigit():
        return get_for_customer(qs, request.customer, pk=int(raw))
    subscription = qs.filter(customer=request.customer).order_by("created_at").first()
    if subscription is None:
        raise Http404("No live subscription.")
    return subscription


@customer_view(PACKAGE)
def package_page(request):
    customer = request.customer
    try:
        subscription = live_subscription(request)
    except Http404:
        return render(request, "portal/package.html", {"customer": customer, "subscription": None})
    active_prices = Prefetch("prices", queryset=Price.objects.filter(is_active=True, currency=subscription.currency))
    current = Package.objects.prefetch_related(active_prices).get(pk=subscription.package_id)
    alternatives = (
        current.change_targets.filter(is_active=True, is_addon=False)
        .prefetch_related(active_prices)
        .order_by("display_order", "name")
    )
    offers = offers_for([current, *alternatives], currency=subscription.currency, seats=subscription.seats)
    live_addons = list(
        SubscriptionAddon.objects.filter(subscription=subscription, ended_at__isnull=True).select_related("package")
    )
    live_ids = {a.package_id for a in live_addons}
    available_addons = [
        o
        for o in offers_for(
            Package.objects.filter(is_addon=True, is_active=True, addon_for=current)
            .prefetch_related(active_prices)
            .order_by("display_order"),
            currency=subscription.currency,
            seats=1,
        )
        if o.package.pk not in live_ids
    ]
    scheduled = list(
        ScheduledChange.objects.filter(subscription=subscription, applied_at__isnull=True, canceled_at__isnull=True)
    )
    return render(
        request,
        "portal/package.html",
        {
            "customer": customer,
            "subscription": subscription,
            "current_offer": offers[0] if offers and offers[0].package.pk == current.pk else None,
            "alternatives": [o for o in offers if o.package.pk != current.pk],
            "live_addons": live_addons,
            "available_addons": available_addons,
            "scheduled": scheduled,
        },
    )
