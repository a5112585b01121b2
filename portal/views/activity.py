"""The audit trail of the customer's own changes: who, when, what."""

from django.core.paginator import Paginator
from django.shortcuts import render

from portal.page_cache import evaluated_page, page_data
from portal.permissions import ACTIVITY, customer_view
from subscriptions.models import AuditEvent


@customer_view(ACTIVITY)
def activity(request):
    number = request.GET.get("page")
    page = page_data(request, "activity", lambda: _page(request.customer, number), parts=(number,))
    return render(request, "portal/activity.html", {"customer": request.customer, "page": page})


def _page(customer, number):
    # In the order things happened: a payment recorded late sits on the day it was made.
    events = AuditEvent.objects.filter(customer=customer).select_related("actor").order_by("-occurred_at", "-id")
    return evaluated_page(Paginator(events, 50).get_page(number))
