"""Read-side assembly for the dashboard: a fixed number of queries whatever the number of members or invoices."""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Prefetch
from django.utils import timezone

from subscriptions.models import (
    LIVE_STATUSES,
    AuditEvent,
    Membership,
    SeatAssignment,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)

ACTIVE_STATES = {"active", "applied", "done", "enabled", "succeeded"}


@dataclass
class EnablementItem:
    name: str
    state: str
    label: str
    detail: str = ""

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass
class Enablement:
    items: list[EnablementItem] = field(default_factory=list)
    known: bool = True
    state: str = ""  # from provisioning: active | pending | failed | none
    detail: str = ""

    @property
    def all_active(self) -> bool:
        """Stop polling: everything is on, or there is nothing to switch on and nothing in flight."""
        if self.state:
            return self.state in ("active", "none")
        return all(item.is_active for item in self.items)

    @property
    def active_count(self) -> int:
        return sum(item.is_active for item in self.items)


def _attr(obj, *names, default=None):
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def enablement_for(*, customer) -> Enablement:
    """Adapts `subscriptions.selectors.enablement_status` (the provisioning work) to what the panel shows."""
    try:
        from subscriptions.selectors import enablement_status
    except ImportError:
        return Enablement(known=False)
    raw = enablement_status(customer=customer)
    rows = _attr(raw, "items", "entitlements", "features", default=raw)
    items = []
    for row in rows or []:
        state = str(_attr(row, "state", "status", default="pending"))
        items.append(
            EnablementItem(
                name=str(_attr(row, "name", "label", "feature_name", "feature_key", "feature", default="")),
                state=state,
                label=str(_attr(row, "state_label", "status_label", default=state.replace("_", " ").capitalize())),
                detail=str(_attr(row, "detail", "message", "last_error", default="") or ""),
            )
        )
    state = _attr(raw, "state", default="")
    detail = ""
    if state == "failed":
        detail = str(_attr(raw, "last_error", default="") or "")
    elif state == "pending":
        since = _attr(raw, "pending_since", default=None)
        detail = f"Started {timezone.localtime(since):%H:%M}" if since else ""
    return Enablement(items=items, state=str(state or ""), detail=detail)


def estimated_recurring_minor(subscription: Subscription, addons: list[SubscriptionAddon]) -> int:
    """Next recurring amount before tax, from the subscription's own price snapshot."""
    extra_seats = max(0, subscription.seats - subscription.included_seats)
    total = subscription.flat_amount_minor + extra_seats * subscription.seat_amount_minor
    total += sum(addon.flat_amount_minor * addon.quantity for addon in addons)
    return total


def _trial_days_left(subscription: Subscription, now: datetime) -> int | None:
    if subscription.status != SubscriptionStatus.TRIALING or not subscription.trial_end:
        return None
    return max(0, (subscription.trial_end - now).days + (1 if (subscription.trial_end - now).seconds else 0))


def dashboard_context(*, customer, user, can) -> dict:
    now = timezone.now()
    live_addons = Prefetch(
        "addons",
        queryset=SubscriptionAddon.objects.filter(ended_at__isnull=True).select_related("package"),
        to_attr="live_addons",
    )
    subscriptions = list(
        Subscription.objects.filter(customer=customer, status__in=LIVE_STATUSES)
        .select_related("package")
        .prefetch_related(live_addons)
        .annotate(
            assigned=Count("seat_assignments", distinct=True),
            holds_seat=Exists(SeatAssignment.objects.filter(subscription=OuterRef("pk"), user=user)),
        )
        .order_by("created_at")
    )
    cards = []
    for sub in subscriptions:
        cards.append(
            {
                "subscription": sub,
                "addons": sub.live_addons,
                "assigned": sub.assigned,
                "unassigned": max(0, sub.seats - sub.assigned),
                "trial_days_left": _trial_days_left(sub, now),
                "estimated_minor": estimated_recurring_minor(sub, sub.live_addons),
                "holds_seat": sub.holds_seat,
            }
        )
    members = Membership.objects.filter(customer=customer).aggregate(total=Count("id"))
    activity = []
    if can.activity:
        activity = list(AuditEvent.objects.filter(customer=customer).select_related("actor")[:5])
    hints = []
    for card in cards:
        if can.seats and card["unassigned"]:
            n = card["unassigned"]
            hints.append(f"{n} seat{'s' if n != 1 else ''} on {card['subscription'].package.name} unassigned")
    if can.seats and members["total"] == 1:
        hints.append("You are the only person here yet: invite your team")
    enablement = enablement_for(customer=customer)
    return {
        "cards": cards,
        "members": members,
        "activity": activity,
        "hints": hints,
        "enablement": enablement,
        "past_due": any(c["subscription"].status == SubscriptionStatus.PAST_DUE for c in cards),
    }
