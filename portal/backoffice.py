"""Reads for the back office's customer 360 page: everything about one customer in a fixed number of queries.

Each section is one query (or one query plus one prefetch), capped at a number of rows, so the page's query count
does not grow with the customer's history. The timeline merges the sections' rows in memory.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Prefetch
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import (
    LIVE_STATUSES,
    AuditEvent,
    Customer,
    Invitation,
    Membership,
    StaffNote,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)

SECTION_LIMIT = 25
TIMELINE_LIMIT = 100


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    who: str
    what: str
    detail: str = ""
    url: str = ""


@dataclass(frozen=True)
class Health:
    level: str  # "ok", "warning", "error"
    message: str


@dataclass
class Customer360:
    customer: Customer
    subscriptions: list[Subscription]
    members: list[Membership]
    pending_invitations: list[Invitation]
    notes: list[StaffNote]
    audit: list[AuditEvent]
    timeline: list[TimelineEntry] = field(default_factory=list)
    health: list[Health] = field(default_factory=list)

    @property
    def live_subscriptions(self) -> list[Subscription]:
        return [s for s in self.subscriptions if s.status in LIVE_STATUSES]

    @property
    def seats_purchased(self) -> int:
        return sum(s.seats for s in self.live_subscriptions)

    @property
    def seats_assigned(self) -> int:
        return sum(s.assigned_seats for s in self.live_subscriptions)


def _who(user) -> str:
    return user.email if user is not None else "system"


def customer_360(*, customer: Customer, now: datetime | None = None) -> Customer360:
    now = now or timezone.now()
    subscriptions = list(
        Subscription.objects.filter(customer=customer)
        .select_related("package")
        .annotate(assigned_seats=Count("seat_assignments", distinct=True))
        .prefetch_related(
            Prefetch(
                "addons",
                queryset=SubscriptionAddon.objects.filter(ended_at__isnull=True).select_related("package"),
                to_attr="live_addons",
            )
        )
        .order_by("-created_at")[:SECTION_LIMIT]
    )
    members = list(
        Membership.objects.filter(customer=customer).select_related("user").order_by("role", "user__email")[:200]
    )
    invitations = list(
        Invitation.objects.filter(
            customer=customer, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).select_related("invited_by")[:SECTION_LIMIT]
    )
    notes = list(StaffNote.objects.filter(customer=customer).select_related("author")[:SECTION_LIMIT])
    audit = list(AuditEvent.objects.filter(customer=customer).select_related("actor")[:TIMELINE_LIMIT])
    view = Customer360(
        customer=customer,
        subscriptions=subscriptions,
        members=members,
        pending_invitations=invitations,
        notes=notes,
        audit=audit,
    )
    view.timeline = _timeline(view)
    view.health = _health(view, now=now)
    return view


def _timeline(view: Customer360) -> list[TimelineEntry]:
    entries = [
        TimelineEntry(
            at=event.created_at,
            kind="change",
            who=_who(event.actor) if event.actor_id else event.get_actor_kind_display(),
            what=event.summary or event.action,
            detail=event.reason,
            url=reverse("admin:subscriptions_auditevent_change", args=[event.pk]),
        )
        for event in view.audit
    ]
    entries += [
        TimelineEntry(at=note.created_at, kind="note", who=_who(note.author), what="Internal note", detail=note.body)
        for note in view.notes
    ]
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries[:TIMELINE_LIMIT]


def _health(view: Customer360, *, now: datetime) -> list[Health]:
    health: list[Health] = []
    live = view.live_subscriptions
    if not live:
        health.append(Health("warning", "No live subscription."))
    for subscription in live:
        if subscription.status == SubscriptionStatus.PAST_DUE:
            health.append(Health("error", f"{subscription.package.name} is past due."))
        if (
            subscription.status == SubscriptionStatus.TRIALING
            and subscription.trial_end
            and subscription.trial_end - now < timedelta(days=3)
        ):
            health.append(
                Health("warning", f"Trial of {subscription.package.name} ends {subscription.trial_end:%Y-%m-%d}.")
            )
        if subscription.current_period_end <= now:
            health.append(
                Health(
                    "error",
                    f"{subscription.package.name}: ended {subscription.current_period_end:%Y-%m-%d}, not renewed.",
                )
            )
        if subscription.cancel_at_period_end:
            health.append(
                Health("warning", f"{subscription.package.name} cancels on {subscription.current_period_end:%Y-%m-%d}.")
            )
        if subscription.assigned_seats > subscription.seats:
            health.append(
                Health("error", f"{subscription.assigned_seats} seats assigned but only {subscription.seats} bought.")
            )
    if not health:
        health.append(Health("ok", "Nothing needs attention."))
    return health
