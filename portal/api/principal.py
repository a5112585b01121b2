"""Who is calling, and what they may do with a customer's objects.

Three kinds of principal: a person (session or short-lived access token), a customer API key (one customer, one
role), and a service token (the product being sold; reads entitlements only). Role rules mirror the portal:
owners do everything; billing admins handle billing, invoices, tax and seats; members read what concerns them.
A caller with no access to a customer gets 404 for everything under it, so ids leak nothing.
"""

from dataclasses import dataclass
from enum import StrEnum

from rest_framework.exceptions import NotFound, PermissionDenied

from portal.models import AccessToken, ApiKey, ApiKeyRole, ServiceToken
from subscriptions.models import ActorKind, Customer, Membership, Role, User

MAX_DB_ID = 2**63 - 1


class Capability(StrEnum):
    READ = "read"  # the customer, its subscriptions and entitlements
    MEMBERS_READ = "members.read"
    MEMBERS_WRITE = "members.write"
    BILLING_READ = "billing.read"  # billing profile, invoices, credit notes, tax exemptions
    BILLING_WRITE = "billing.write"  # billing profile, tax exemptions
    SEATS_WRITE = "seats.write"  # seat count changes and seat assignments
    SUBSCRIPTION_WRITE = "subscription.write"  # package changes, cancel, reactivate
    WEBHOOKS = "webhooks"  # outbound webhook endpoints, their secrets and delivery log (owners)


ALL = frozenset(Capability)
# As in the portal (portal/permissions.py): billing admins handle billing, invoices, tax, seats and invitations.
BILLING = frozenset(
    {
        Capability.READ,
        Capability.MEMBERS_READ,
        Capability.MEMBERS_WRITE,
        Capability.BILLING_READ,
        Capability.BILLING_WRITE,
        Capability.SEATS_WRITE,
    }
)
READ_ONLY = frozenset({Capability.READ, Capability.MEMBERS_READ, Capability.BILLING_READ})

ROLE_CAPABILITIES: dict[str, frozenset[Capability]] = {
    Role.OWNER: ALL,
    Role.BILLING_ADMIN: BILLING,
    Role.MEMBER: frozenset({Capability.READ}),
}
API_KEY_CAPABILITIES: dict[str, frozenset[Capability]] = {
    ApiKeyRole.ADMIN: ALL,
    ApiKeyRole.BILLING: BILLING,
    ApiKeyRole.READ_ONLY: READ_ONLY,
}
# Staff read everything through the API (including draft and held invoices); they change things in the back office.
STAFF_CAPABILITIES = READ_ONLY

CAPABILITY_WORDS = {
    Capability.READ: "view this account",
    Capability.MEMBERS_READ: "view the people on this account",
    Capability.MEMBERS_WRITE: "invite people to this account",
    Capability.BILLING_READ: "view billing details, invoices and tax exemptions",
    Capability.BILLING_WRITE: "change billing details or tax exemptions",
    Capability.SEATS_WRITE: "change seats or seat assignments",
    Capability.SUBSCRIPTION_WRITE: "change, cancel or reactivate subscriptions",
    Capability.WEBHOOKS: "manage webhook endpoints",
}


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
        """The person services record as acting: the user, or whoever created the API key."""
        if self.user is not None:
            return self.user
        if self.api_key is not None:
            return self.api_key.created_by
        return None

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
    role: str  # the membership role, the API key role, or "staff"
    capabilities: frozenset[Capability]

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def require(self, capability: Capability) -> None:
        if not self.can(capability):
            raise PermissionDenied(
                f"Your role ({self.role.replace('_', ' ')}) cannot {CAPABILITY_WORDS[capability]}.",
                code="permission_denied",
            )

    @property
    def sees_unissued_invoices(self) -> bool:
        return self.principal.is_staff

    @property
    def member_only(self) -> bool:
        """True when the caller may see only what concerns them personally (the member role)."""
        return self.role == Role.MEMBER


def parse_id(value) -> int:
    """A path or query id, or 404: ids beyond the database's range or non-numeric ids name nothing."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise NotFound("Not found.")
    if number < 1 or number > MAX_DB_ID:
        raise NotFound("Not found.")
    return number


def customer_access(request, customer_id, capability: Capability = Capability.READ) -> CustomerAccess:
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
        access = CustomerAccess(
            customer=customer,
            principal=principal,
            role=principal.api_key.role,
            capabilities=API_KEY_CAPABILITIES[principal.api_key.role],
        )
    else:
        membership = Membership.objects.filter(customer=customer, user=principal.user).first()
        if membership is not None:
            access = CustomerAccess(
                customer=customer,
                principal=principal,
                role=membership.role,
                capabilities=ROLE_CAPABILITIES.get(membership.role, frozenset()),
            )
        elif principal.is_staff:
            access = CustomerAccess(
                customer=customer, principal=principal, role="staff", capabilities=STAFF_CAPABILITIES
            )
        else:
            raise not_found
    access.require(capability)
    return access
