"""Who is calling, and what they may do with a customer's objects.

Three kinds of principal: a person (session or short-lived access token), a customer API key (one customer, one
scope), and a service token (the product being sold; reads entitlements only). What a role, key scope or staff user
may do is `subscriptions.policy` (the same table the portal and the back office ask). A caller with no access to a
customer gets 404 for everything under it, so ids leak nothing.
"""

from dataclasses import dataclass

from rest_framework.exceptions import NotFound, PermissionDenied

from portal.models import AccessToken, ApiKey, ServiceToken
from subscriptions import policy
from subscriptions.inputs import parse_id as parse_db_id
from subscriptions.models import ActorKind, Customer, Membership, Role, User
from subscriptions.policy import Action

# What a refusal tells the caller, in their words (the rules themselves are in subscriptions/policy.py).
ACTION_WORDS = {
    Action.ACCOUNT_VIEW: "view this account",
    Action.MEMBERS_VIEW: "view the people on this account",
    Action.MEMBERS_INVITE: "invite people to this account",
    Action.MEMBERS_INVITE_OWNER: "invite an owner (only an owner can)",
    Action.MEMBERS_MANAGE: "change roles or remove people",
    Action.INVITATIONS_RESEND: "resend invitations",
    Action.BILLING_VIEW: "view billing details, invoices and credit notes",
    Action.BILLING_EDIT: "change billing details",
    Action.BILLING_EDIT_TERMS: "change payment terms or the invoice currency (agreed with billing staff)",
    Action.INVOICES_RESEND: "resend invoice e-mails",
    Action.TAX_VIEW: "view tax exemptions",
    Action.TAX_SUBMIT: "submit tax exemption certificates",
    Action.PAYMENT_METHODS_MANAGE: "manage payment methods",
    Action.SEATS_CHANGE: "change seats or seat assignments",
    Action.PACKAGE_CHANGE: "change, cancel or reactivate subscriptions",
    Action.ACTIVITY_VIEW: "view the activity log",
    Action.API_KEYS_MANAGE: "manage API keys",
    Action.NOTES_ADD: "add internal notes",
    Action.PROVISIONING_RETRY: "retry provisioning",
    Action.WEBHOOKS_MANAGE: "manage webhook endpoints",
    Action.HEALTH_VIEW: "view customer health",
    Action.HEALTH_WEIGHTS: "change the health score's weights",
    Action.METRICS_VIEW: "view revenue metrics",
    Action.TRIALS_EXTEND: "extend trials",
    Action.INVOICES_REVIEW: "review, void or write off invoices",
    Action.CREDIT_NOTES_ISSUE: "issue credit notes",
    Action.PAYMENTS_RECORD: "record payments",
    Action.REFUNDS_RECORD: "record refunds",
    Action.TAX_REVIEW: "review tax exemptions",
    Action.STRIPE_EVENTS_RETRY: "retry Stripe events",
    Action.DISCOUNTS_ATTACH: "attach or end discounts",
    Action.EXPORTS_RUN: "run accounting exports",
}
assert set(ACTION_WORDS) == set(Action)


class ApiKeyUser:
    """Stands in for request.user when a customer API key authenticated the request (there is no person)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, credential):
        self.credential = credential

    def __str__(self) -> str:
        return f"API credential {self.credential.prefix}"


@dataclass(frozen=True)
class Principal:
    kind: str  # "user", "api_key" or "service"
    ident: str  # stable id for throttling and idempotency, e.g. "user:12"
    user: User | None = None
    api_key: ApiKey | None = None
    service_token: ServiceToken | None = None

    @property
    def is_staff(self) -> bool:
        return bool(self.user is not None and self.user.is_staff)

    @property
    def actor(self) -> User | None:
        """The person services record as acting: the user, or whoever created the API key (with actor_kind api).
        Invitations are recorded as made by the key itself (`person`, `actor_label`)."""
        if self.user is not None:
            return self.user
        if self.api_key is not None:
            return self.api_key.created_by
        return None

    @property
    def person(self) -> User | None:
        """The person calling, if any (None for an API key)."""
        return self.user

    @property
    def actor_label(self) -> str:
        """How records name a key caller: "API key ck_1a2b3c4d (name)"; empty for people."""
        if self.api_key is not None:
            return f"API key {self.api_key.prefix} ({self.api_key.name})"[:120]
        return ""

    @property
    def actor_kind(self) -> str:
        if self.kind == "user":
            return ActorKind.STAFF if self.is_staff else ActorKind.CUSTOMER
        return ActorKind.API


def principal_of(request) -> Principal | None:
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        return Principal(kind="api_key", ident=f"key:{auth.pk}", api_key=auth)
    if isinstance(auth, ServiceToken):
        return Principal(kind="service", ident=f"svc:{auth.pk}", service_token=auth)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and isinstance(user, User):
        return Principal(kind="user", ident=f"user:{user.pk}", user=user)
    if isinstance(auth, AccessToken):
        return Principal(kind="user", ident=f"user:{auth.user_id}", user=auth.user)
    return None


@dataclass(frozen=True)
class CustomerAccess:
    customer: Customer
    principal: Principal
    role: str  # the membership role, the API key scope ("key:billing"), or "staff"

    def can(self, action: Action) -> bool:
        if self.role == "staff":
            return policy.staff_allows(self.principal.user, action, in_admin=False)
        return policy.role_allows(self.role, action)

    def require(self, action: Action) -> None:
        if not self.can(action):
            who = self.role.replace("key:", "").replace("_", " ") + (" key" if self.role.startswith("key:") else "")
            raise PermissionDenied(f"Your role ({who}) cannot {ACTION_WORDS[action]}.", code="permission_denied")

    @property
    def sees_unissued_invoices(self) -> bool:
        return self.role == "staff"

    @property
    def member_only(self) -> bool:
        """True when the caller may see only what concerns them personally (the member role)."""
        return self.role == Role.MEMBER


def parse_id(value) -> int:
    """A path or query id, or 404: ids beyond the database's range or non-numeric ids name nothing."""
    number = parse_db_id(value)
    if number is None:
        raise NotFound("Not found.")
    return number


def customer_access(request, customer_id, action: Action = Action.ACCOUNT_VIEW) -> CustomerAccess:
    """Resolve the caller's access to customer `customer_id`; 404 when they have none, 403 when the role lacks it."""
    principal = principal_of(request)
    pk = parse_id(customer_id)
    not_found = NotFound("No such customer.", code="not_found")
    if principal is None or principal.kind == "service":
        raise not_found
    customer = Customer.objects.filter(pk=pk).first()
    if customer is None:
        raise not_found
    if principal.api_key is not None:
        if principal.api_key.customer_id != customer.pk:
            raise not_found
        access = CustomerAccess(customer=customer, principal=principal, role=policy.key_scope(principal.api_key.role))
    else:
        membership = Membership.objects.filter(customer=customer, user=principal.user).first()
        if membership is not None:
            access = CustomerAccess(customer=customer, principal=principal, role=membership.role)
        elif principal.is_staff:
            # Staff who are not on the account read it through the API as far as their permissions go.
            access = CustomerAccess(customer=customer, principal=principal, role="staff")
        else:
            raise not_found
    access.require(action)
    return access
