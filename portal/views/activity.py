"""The audit trail of the customer's own changes: who, when, what."""

from django.core.paginator import Paginator
from django.shortcuts import render

from portal.permissions import ACTIVITY, customer_view
from subscriptions.models import AuditEvent


@customer_view(ACTIVITY)
def activity(request):
    # In the order things happened: a payment recorded late sits on the day it was made.
    events = (
        AuditEvent.objects.filter(customer=request.customer).select_related("actor").order_by("-occurred_at", "-id")
    )
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(request, "portal/activity.html", {"customer": request.customer, "page": page})
