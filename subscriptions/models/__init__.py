"""Subscriptions models, one module per area; every model is importable from here."""

from subscriptions.models.audit import ActorKind, AuditEvent
from subscriptions.models.catalog import (
    DowngradeTiming,
    EntitlementValueKind,
    Interval,
    Package,
    PackageComponent,
    Price,
    Sku,
    SkuKind,
)
from subscriptions.models.customers import Customer, Invitation, Membership, Role
from subscriptions.models.notes import StaffNote
from subscriptions.models.provisioning import (
    ENTITLEMENT_TRANSITIONS,
    RUN_FINISHED_OUTCOMES,
    Entitlement,
    EntitlementKind,
    EntitlementState,
    ProvisioningRun,
    ProvisioningState,
    RunOutcome,
)
from subscriptions.models.subscriptions import (
    LIVE_STATUSES,
    SUBSCRIPTION_TRANSITIONS,
    ScheduledChange,
    ScheduledChangeKind,
    SeatAssignment,
    SeatLedgerEntry,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
    SubscriptionStatus,
)
from subscriptions.models.users import User, UserManager

__all__ = [
    "ENTITLEMENT_TRANSITIONS",
    "RUN_FINISHED_OUTCOMES",
    "Entitlement",
    "EntitlementKind",
    "EntitlementState",
    "ProvisioningRun",
    "ProvisioningState",
    "RunOutcome",
    "LIVE_STATUSES",
    "SUBSCRIPTION_TRANSITIONS",
    "ActorKind",
    "AuditEvent",
    "Customer",
    "DowngradeTiming",
    "EntitlementValueKind",
    "Interval",
    "Invitation",
    "Membership",
    "Package",
    "PackageComponent",
    "Price",
    "Role",
    "ScheduledChange",
    "ScheduledChangeKind",
    "SeatAssignment",
    "SeatLedgerEntry",
    "Sku",
    "SkuKind",
    "StaffNote",
    "Subscription",
    "SubscriptionAddon",
    "SubscriptionChange",
    "SubscriptionStatus",
    "User",
    "UserManager",
]
