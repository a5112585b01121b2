"""Customer-facing pages. Each view parses input, calls a service or selector, and renders."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse

from portal.page_cache import page_data
from portal.permissions import DASHBOARD, SESSION_CUSTOMER_KEY, customer_view
from portal.views import dashboard_data
from portal.views.account import signup_survey_pending
from subscriptions import selectors


def home(request):
    if request.user.is_authenticated:
        return redirect("portal:dashboard")
    return redirect("portal:login")


@login_required
def dashboard_redirect(request):
    """`/dashboard/`: the last customer used in this session, else the first by name."""
    memberships = selectors.memberships_for_user(user=request.user)
    if not memberships:
        if request.user.is_staff:
            return redirect("admin:index")
        return render(request, "portal/no_customer.html")
    remembered = request.session.get(SESSION_CUSTOMER_KEY)
    membership = next((m for m in memberships if m.customer_id == remembered), memberships[0])
    return HttpResponseRedirect(reverse("portal:customer_dashboard", args=[membership.customer_id]))


@customer_view(DASHBOARD)
def dashboard(request):
    customer = request.customer
    context = page_data(
        request,
        "dashboard",
        lambda: dashboard_data.dashboard_context(customer=customer, user=request.user, can=request.can),
        valid_until=dashboard_data.dashboard_valid_until,
    )
    return render(
        request,
        "portal/dashboard.html",
        {
            "customer": customer,
            "membership": request.membership,
            **context,
            "signup_survey": signup_survey_pending(request),  # per request (the session's), outside the fragments
        },
    )


@customer_view(DASHBOARD)
def enablement(request):
    """The htmx-polled enablement panel; it stops polling (no hx-trigger) once everything is active."""
    status = page_data(request, "enablement", lambda: dashboard_data.enablement_for(customer=request.customer))
    return render(request, "portal/_enablement.html", {"customer": request.customer, "enablement": status})
