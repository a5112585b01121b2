"""The seats page: change the seat count with a live preview, see who holds a seat, assign, unassign, invite.

Members see only their own seat; owners and billing admins manage seats (capability `seats`).
"""

from django.db.models import Exists, OuterRef
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from portal.page_cache import page_data
from portal.permissions import OWN_SEAT, customer_view
from portal.views.package import live_subscription
from subscriptions.models import Invitation, Membership, Role, SeatAssignment


@customer_view(OWN_SEAT)
def seats_page(request):
    context = page_data(
        request,
        "seats",
        lambda: seats_page_context(request),
        parts=(request.GET.get("subscription_id", ""),),
        valid_until=_first_expiry,
    )
    return render(request, "portal/seats.html", {**context, "customer": request.customer})


def _first_expiry(context: dict):
    # The pending invitations shown are those not expired yet: the list holds until the first of them expires.
    return min((invitation.expires_at for invitation in context.get("invitations") or ()), default=None)


def seats_page_context(request) -> dict:
    customer = request.customer
    try:
        subscription = live_subscription(request)
    except Http404:
        subscription = None
    context = {"customer": customer, "subscription": subscription}
    if subscription is not None:
        holders = SeatAssignment.objects.filter(subscription=subscription, user=OuterRef("user"))
        if request.can.seats:
            people = list(
                Membership.objects.filter(customer=customer)
                .select_related("user")
                .annotate(holds_seat=Exists(holders))
                .order_by("user__email")
            )
            assigned = sum(1 for p in people if p.holds_seat)
            # The signed-in user is one of the people (a member of the customer): no query of its own.
            holds_seat = any(p.holds_seat for p in people if p.user_id == request.user.pk)
        else:
            people = []
            assigned = SeatAssignment.objects.filter(subscription=subscription).count()
            holds_seat = SeatAssignment.objects.filter(subscription=subscription, user=request.user).exists()
        context.update(
            {
                "people": people,
                "assigned": assigned,
                "free": max(0, subscription.seats - assigned),
                "holds_seat": holds_seat,
                "invitations": _pending_invitations(customer) if request.can.invite else [],
                "roles": Role.choices,
            }
        )
    return context


def _pending_invitations(customer):
    return list(
        Invitation.objects.filter(
            customer=customer, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        ).order_by("-created_at")[:50]
    )
