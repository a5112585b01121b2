"""Recording outbound events in the outbox, in the caller's transaction (docs/webhooks.md).

Every service that changes something an integrator cares about calls `event_record` (or `events_record_many` on a
batch path) inside its own `transaction.atomic()`: the event exists exactly when the change committed. Delivery is
queued after commit (`webhooks` queue); if that message is lost, the beat re-scan of undispatched events finds it.

Snapshots of subscriptions-layer objects are built here; billing builds its own (billing/events.py) and passes the
`data` dict, so this module never imports billing.
"""

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from subscriptions.dispatch import send_now
from subscriptions.models import Entitlement, Event, Membership, Subscription, WebhookEndpoint
from subscriptions.prebuilt import prebuilt
from subscriptions.services.health_marks import health_marks_record, moves_health

API_VERSION = "2026-12-01"
logger = logging.getLogger(__name__)


def iso(value: datetime | date | None) -> str | None:
    """Datetimes as RFC 3339 UTC with a Z, dates as YYYY-MM-DD, as every event shows them."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat()


@dataclass(frozen=True)
class EventDraft:
    type: str
    customer_id: int | None
    object_type: str
    object_id: str
    data: dict


@prebuilt
def _last_sequences():
    """Each object's last sequence number, grouped: built once per process (its aggregate is most of the cost of
    building the query); each call filters a clone to its objects."""
    return Event.objects.values("object_id").annotate(last=Max("sequence")).order_by()


def _next_sequences(drafts: list[EventDraft]) -> list[int]:
    """Per-object sequence numbers for `drafts` (in order). The caller holds the object's row lock (every service
    that records an event has locked the subscription, invoice, … it changed), so max+1 cannot race."""
    by_type: dict[str, set[str]] = defaultdict(set)
    for draft in drafts:
        by_type[draft.object_type].add(draft.object_id)
    last: dict[tuple[str, str], int] = {}
    for object_type, ids in by_type.items():
        for row in _last_sequences().filter(object_type=object_type, object_id__in=ids):
            last[(object_type, row["object_id"])] = row["last"]
    numbers = []
    for draft in drafts:
        key = (draft.object_type, draft.object_id)
        last[key] = last.get(key, 0) + 1
        numbers.append(last[key])
    return numbers


def events_record_many(drafts: Iterable[EventDraft]) -> list[Event]:
    """Append events to the outbox in one insert and queue their delivery after commit. Events that move a health
    score (health_marks.HEALTH_EVENT_TYPES) also mark their customers for a debounced recompute."""
    drafts = list(drafts)
    if not drafts:
        return []
    now = timezone.now()
    # An event no enabled endpoint wants (staff's, or its own customer's, by WebhookEndpoint.wants) has nobody
    # waiting for it: it is kept (the log, a later resend) but needs no delivery, so it is recorded as dispatched and
    # queues nothing. One query, whatever the number of events; customers without an endpoint cost no fan-out.
    customer_ids = {draft.customer_id for draft in drafts if draft.customer_id is not None}
    endpoints = list(
        WebhookEndpoint.objects.filter(enabled=True)
        .filter(Q(customer__isnull=True) | Q(customer_id__in=customer_ids))
        .only("customer_id", "event_types")
    )
    events = [
        Event(
            type=draft.type,
            customer_id=draft.customer_id,
            object_type=draft.object_type,
            object_id=draft.object_id,
            sequence=sequence,
            data=draft.data,
            created_at=now,
            dispatched_at=(
                None if any(e.wants(event_type=draft.type, customer_id=draft.customer_id) for e in endpoints) else now
            ),
        )
        for draft, sequence in zip(drafts, _next_sequences(drafts), strict=True)
    ]
    wanted = any(event.dispatched_at is None for event in events)
    Event.objects.bulk_create(events)
    moving = [draft for draft in drafts if moves_health(draft.type, draft.data)]
    if moving:  # the customer's health score is recomputed soon (debounced; subscriptions/services/health_marks.py)
        health_marks_record((draft.customer_id for draft in moving), reason=moving[0].type)
    if wanted:
        public_ids = [event.public_id for event in events if event.dispatched_at is None]
        transaction.on_commit(lambda: _dispatch_after_commit(public_ids))
    return events


def event_record(*, type: str, customer_id: int | None, object_type: str, object_id, data: dict) -> Event:  # noqa: A002
    """Append one event to the outbox (same transaction as the change); delivered after commit."""
    return events_record_many([EventDraft(type, customer_id, object_type, str(object_id), data)])[0]


def _dispatch_after_commit(public_ids: list[str]) -> None:
    """The one on-commit enqueue for event delivery. A lost message is harmless: the outbox re-scan sends it."""
    send_now("subscriptions.webhook_events_dispatch", public_ids=public_ids)


# --- snapshots of subscriptions-layer objects ----------------------------------------------------------------------


def subscription_snapshot(subscription: Subscription) -> dict:
    package = subscription.package
    return {
        "object": "subscription",
        "id": subscription.pk,
        "status": subscription.status,
        "package": {"slug": package.slug, "name": package.name},
        "interval": subscription.interval,
        "currency": subscription.currency,
        "seats": subscription.seats,
        "included_seats": subscription.included_seats,
        "flat_amount_minor": subscription.flat_amount_minor,
        "seat_amount_minor": subscription.seat_amount_minor,
        "current_period_start": iso(subscription.current_period_start),
        "current_period_end": iso(subscription.current_period_end),
        "trial_end": iso(subscription.trial_end),
        "cancel_at_period_end": subscription.cancel_at_period_end,
        "canceled_at": iso(subscription.canceled_at),
        "ended_at": iso(subscription.ended_at),
        "version": subscription.version,
    }


def subscription_event(subscription: Subscription, *, change: str) -> EventDraft:
    """subscription.created / .updated / .canceled from what happened (`change`: created, seats, package, addon,
    cancellation, reactivation, renewal, status, canceled, ended)."""
    if change == "created":
        type_ = "subscription.created"
    elif change in ("canceled", "ended"):
        type_ = "subscription.canceled"
    else:
        type_ = "subscription.updated"
    data = {**subscription_snapshot(subscription), "change": change}
    return EventDraft(type_, subscription.customer_id, "subscription", str(subscription.pk), data)


def subscription_event_record(subscription: Subscription, *, change: str) -> Event:
    return events_record_many([subscription_event(subscription, change=change)])[0]


def entitlement_event(row: Entitlement) -> EventDraft:
    data = {
        "object": "entitlement",
        "id": row.pk,
        "feature_key": row.feature_key,
        "user_id": row.user_id,
        "value_kind": row.value_kind,
        "desired_value": row.desired_value,
        "applied_value": row.applied_value,
        "state": row.state,
        "error": row.error or "",
        "activated_at": iso(row.activated_at),
    }
    return EventDraft("entitlement.updated", row.customer_id, "entitlement", str(row.pk), data)


def member_event_record(membership: Membership, *, added: bool) -> Event:
    data = {
        "object": "member",
        "id": membership.pk,
        "user_id": membership.user_id,
        "email": membership.user.email,
        "role": membership.role,
    }
    type_ = "member.added" if added else "member.removed"
    return event_record(
        type=type_, customer_id=membership.customer_id, object_type="member", object_id=membership.pk, data=data
    )
