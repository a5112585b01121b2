"""Customer-facing pages. Each view parses input, calls a service or selector, and renders."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from subscriptions import selectors


def home(request):
    if request.user.is_authenticated:
        return redirect("portal:dashboard")
    return redirect("portal:login")


@login_required
def dashboard(request):
    memberships = selectors.memberships_for_user(user=request.user)
    if not memberships:
        if request.user.is_staff:
            return redirect("admin:index")
        return render(request, "portal/no_customer.html")
    membership = memberships[0]
    customer = membership.customer
    return render(
        request,
        "portal/dashboard.html",
        {
            "customer": customer,
            "membership": membership,
            "subscriptions": selectors.subscriptions_live_for_customer(customer=customer),
        },
    )
