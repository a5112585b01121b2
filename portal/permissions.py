"""The portal's side of the one policy (`subscriptions/policy.py`): the decorator every customer page uses.

How the current customer is chosen: **URL-scoped**. Every customer page lives under `/c/<customer_id>/…`, so a link,
a bookmark, a browser tab and a test all say exactly which customer they act on, and two tabs can show two customers
at once. A user in several customers switches with the menu in the header (it links to the same page of the other
customer); `/dashboard/` remembers the last customer used in the session and redirects there.

What a role may do is the policy table, asked with the page's action. A page declares it with
`@customer_view(Action.BILLING_VIEW)` (or one of the short names below); the decorator then

- sends anonymous visitors to the sign-in page,
- answers **404** when the signed-in user is not a member of that customer (we never reveal that it exists; staff
  are not members: they work in the back office),
- answers **403** with a friendly page when the user's role may not do the action,
- otherwise sets `request.customer`, `request.membership` and `request.memberships` (all the user's memberships,
  for the switcher, fetched in the same single query) and calls the view with `customer_id` removed.

Objects inside a customer are fetched with `get_for_customer(...)`, which answers 404 for another customer's object.
"""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from subscriptions import policy
from subscriptions.data_versions import data_version_annotation
from subscriptions.models import Membership
from subscriptions.policy import Action

# The pages' names for policy actions (also what templates ask: `{% if request.can.invoices %}`).
DASHBOARD = OWN_SEAT = Action.ACCOUNT_VIEW
BILLING = Action.BILLING_EDIT  # the billing details page is the edit form
INVOICES = Action.BILLING_VIEW
TAX = Action.TAX_SUBMIT  # the tax page is the submit form; downloading a certificate is TAX_VIEW
PAYMENT_METHODS = Action.PAYMENT_METHODS_MANAGE
SEATS = Action.SEATS_CHANGE  # seat count and assignment
INVITE = Action.MEMBERS_INVITE
PACKAGE = Action.PACKAGE_CHANGE
MEMBERS = Action.MEMBERS_MANAGE  # role changes, removals
ACTIVITY = Action.ACTIVITY_VIEW
API_KEYS = Action.API_KEYS_MANAGE
WEBHOOKS = Action.WEBHOOKS_MANAGE  # outbound webhook endpoints (owners, like API keys)

TEMPLATE_NAMES: dict[str, Action] = {
    "dashboard": DASHBOARD,
    "own_seat": OWN_SEAT,
    "billing": BILLING,
    "invoices": INVOICES,
    "tax": TAX,
    "payment_methods": PAYMENT_METHODS,
    "seats": SEATS,
    "invite": INVITE,
    "invite_owner": Action.MEMBERS_INVITE_OWNER,
    "package": PACKAGE,
    "members": MEMBERS,
    "activity": ACTIVITY,
    "api_keys": API_KEYS,
    "webhooks": WEBHOOKS,
}

# What a forbidden page tells the user, in their words.
ACTION_NAMES = {
    Action.ACCOUNT_VIEW: "the dashboard",
    Action.MEMBERS_VIEW: "the people on this account",
    Action.MEMBERS_INVITE: "invitations",
    Action.MEMBERS_INVITE_OWNER: "inviting an owner",
    Action.MEMBERS_MANAGE: "people and roles",
    Action.INVITATIONS_RESEND: "resending invitations",
    Action.BILLING_VIEW: "invoices",
    Action.BILLING_EDIT: "billing details",
    Action.BILLING_EDIT_TERMS: "payment terms",
    Action.INVOICES_RESEND: "resending invoices",
    Action.TAX_VIEW: "tax exemption certificates",
    Action.TAX_SUBMIT: "tax exemption",
    Action.PAYMENT_METHODS_MANAGE: "payment methods",
    Action.SEATS_CHANGE: "seats",
    Action.PACKAGE_CHANGE: "the package and add-ons",
    Action.ACTIVITY_VIEW: "the activity log",
    Action.API_KEYS_MANAGE: "API keys",
    Action.NOTES_ADD: "internal notes",
    Action.PROVISIONING_RETRY: "provisioning",
    Action.WEBHOOKS_MANAGE: "webhooks",
    Action.HEALTH_VIEW: "customer health",
    Action.HEALTH_WEIGHTS: "the health score's weights",
    Action.METRICS_VIEW: "revenue metrics",
    Action.TRIALS_EXTEND: "trials",
    Action.INVOICES_REVIEW: "invoice review",
    Action.CREDIT_NOTES_ISSUE: "credit notes",
    Action.PAYMENTS_RECORD: "recording payments",
    Action.REFUNDS_RECORD: "refunds",
    Action.TAX_REVIEW: "tax exemption review",
    Action.STRIPE_EVENTS_RETRY: "Stripe events",
    Action.DISCOUNTS_ATTACH: "discounts",
    Action.EXPORTS_RUN: "accounting exports",
}
assert set(ACTION_NAMES) == set(Action)

SESSION_CUSTOMER_KEY = "portal_customer_id"

DATA_VERSION = data_version_annotation(customer_column='"subscriptions_membership"."customer_id"')


def role_can(role: str, action) -> bool:
    return policy.role_allows(role, action)


class Can:
    """Template helper: `{% if can.invoices %}` — what the current membership may do (names: TEMPLATE_NAMES)."""

    def __init__(self, role: str):
        self._role = role

    def __getattr__(self, name: str) -> bool:
        if name.startswith("_") or name not in TEMPLATE_NAMES:
            raise AttributeError(name)
        return policy.role_allows(self._role, TEMPLATE_NAMES[name])


def customer_view(action) -> Callable:
    """Decorate a view taking `customer_id`: resolve the customer from the URL and ask the policy for `action`."""
    action = policy.rule_for(action).action  # an unknown action fails at import, not at request time

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, customer_id: int, *args, **kwargs) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            memberships = Membership.objects.filter(user=request.user).select_related("customer")
            if settings.PAGE_CACHE:
                # Each customer's data version, read first, before any of the page's data (portal/page_cache.py).
                memberships = memberships.annotate(data_version=DATA_VERSION)
            memberships = list(memberships.order_by("customer__name"))
            membership = next((m for m in memberships if m.customer_id == customer_id), None)
            if membership is None:
                raise Http404("No such customer.")
            request.membership = membership
            request.customer = membership.customer
            request.memberships = memberships
            request.can = Can(membership.role)
            if request.session.get(SESSION_CUSTOMER_KEY) != customer_id:
                request.session[SESSION_CUSTOMER_KEY] = customer_id
            if not policy.role_allows(membership.role, action):
                return render(
                    request,
                    "portal/forbidden.html",
                    {"customer": membership.customer, "membership": membership, "what": ACTION_NAMES[action]},
                    status=403,
                )
            return view(request, *args, **kwargs)

        wrapped.required_action = action
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
