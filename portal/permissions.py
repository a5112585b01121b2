"""The one role-permission mechanism of the customer portal.

How the current customer is chosen: **URL-scoped**. Every customer page lives under `/c/<customer_id>/…`, so a link,
a bookmark, a browser tab and a test all say exactly which customer they act on, and two tabs can show two customers
at once. A user in several customers switches with the menu in the header (it links to the same page of the other
customer); `/dashboard/` remembers the last customer used in the session and redirects there.

What a role may do is one table (`ROLE_CAPABILITIES`). A page declares the capability it needs with
`@customer_view("billing")`; the decorator then

- sends anonymous visitors to the sign-in page,
- answers **404** when the signed-in user is not a member of that customer (we never reveal that it exists),
- answers **403** with a friendly page when the user's role lacks the capability,
- otherwise sets `request.customer`, `request.membership` and `request.memberships` (all the user's memberships,
  for the switcher, fetched in the same single query) and calls the view with `customer_id` removed.

Objects inside a customer are fetched with `get_for_customer(...)`, which answers 404 for another customer's object.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from subscriptions.models import Membership, Role

DASHBOARD = "dashboard"
OWN_SEAT = "own_seat"
BILLING = "billing"  # billing details
INVOICES = "invoices"
TAX = "tax"
PAYMENT_METHODS = "payment_methods"
SEATS = "seats"  # seat count, assignment, invitations
PACKAGE = "package"  # package, add-ons, cancellation
MEMBERS = "members"  # role changes
ACTIVITY = "activity"
API_KEYS = "api_keys"
WEBHOOKS = "webhooks"  # outbound webhook endpoints (owners, like API keys)

ALL_CAPABILITIES = frozenset(
    {
        DASHBOARD,
        OWN_SEAT,
        BILLING,
        INVOICES,
        TAX,
        PAYMENT_METHODS,
        SEATS,
        PACKAGE,
        MEMBERS,
        ACTIVITY,
        API_KEYS,
        WEBHOOKS,
    }
)

ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.OWNER: ALL_CAPABILITIES,
    Role.BILLING_ADMIN: frozenset({DASHBOARD, OWN_SEAT, BILLING, INVOICES, TAX, PAYMENT_METHODS, SEATS}),
    Role.MEMBER: frozenset({DASHBOARD, OWN_SEAT}),
}

# What a forbidden page tells the user, in their words.
CAPABILITY_NAMES = {
    DASHBOARD: "the dashboard",
    OWN_SEAT: "your seat",
    BILLING: "billing details",
    INVOICES: "invoices",
    TAX: "tax exemption",
    PAYMENT_METHODS: "payment methods",
    SEATS: "seats and invitations",
    PACKAGE: "the package and add-ons",
    MEMBERS: "people and roles",
    ACTIVITY: "the activity log",
    API_KEYS: "API keys",
    WEBHOOKS: "webhooks",
}

SESSION_CUSTOMER_KEY = "portal_customer_id"


def role_can(role: str, capability: str) -> bool:
    if capability not in ALL_CAPABILITIES:
        raise ValueError(f"Unknown capability {capability!r}")
    return capability in ROLE_CAPABILITIES.get(role, frozenset())


class Can:
    """Template helper: `{% if can.invoices %}` — what the current membership may do."""

    def __init__(self, role: str):
        self._role = role

    def __getattr__(self, capability: str) -> bool:
        if capability.startswith("_"):
            raise AttributeError(capability)
        return capability in ROLE_CAPABILITIES.get(self._role, frozenset())


def customer_view(capability: str) -> Callable:
    """Decorate a view taking `customer_id`: resolve the customer from the URL and check the role's capability."""
    if capability not in ALL_CAPABILITIES:
        raise ValueError(f"Unknown capability {capability!r}")

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, customer_id: int, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            memberships = list(
                Membership.objects.filter(user=request.user).select_related("customer").order_by("customer__name")
            )
            membership = next((m for m in memberships if m.customer_id == customer_id), None)
            if membership is None:
                raise Http404("No such customer.")
            request.membership = membership
            request.customer = membership.customer
            request.memberships = memberships
            request.can = Can(membership.role)
            if request.session.get(SESSION_CUSTOMER_KEY) != customer_id:
                request.session[SESSION_CUSTOMER_KEY] = customer_id
            if not role_can(membership.role, capability):
                return render(
                    request,
                    "portal/forbidden.html",
                    {
                        "customer": membership.customer,
                        "membership": membership,
                        "what": CAPABILITY_NAMES[capability],
                    },
                    status=403,
                )
            return view(request, *args, **kwargs)

        wrapped.required_capability = capability
        return wrapped

    return decorator


def get_for_customer(queryset: QuerySet | type[Model], customer, **lookup) -> Model:
    """Fetch one object that belongs to `customer`; another customer's object is a 404, never a 403."""
    if isinstance(queryset, type):
        queryset = queryset._default_manager.all()
    customer_field = lookup.pop("customer_field", "customer")
    try:
        return queryset.get(**{customer_field: customer}, **lookup)
    except queryset.model.DoesNotExist:
        raise Http404("Not found.")
