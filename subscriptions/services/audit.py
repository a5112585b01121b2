"""The one way to write an audit row. Every service that changes something a customer or staff cares about calls it."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.db import models

from subscriptions.models import ActorKind, AuditEvent, Customer, User
from subscriptions.models.audit import OCCURRED_AT, occurred_now


@contextmanager
def audit_occurred_at(moment: datetime | None) -> Iterator[None]:
    """Events recorded inside happened at `moment` (None: now), unless a call says otherwise — for work recorded
    after the fact: a payment entered with the day it was made, the demo replaying months of billing history. Also
    AuditEvent rows built directly (bulk inserts): it is the field's default."""
    token = OCCURRED_AT.set(moment)
    try:
        yield
    finally:
        OCCURRED_AT.reset(token)


def audit_record(
    *,
    customer: Customer | None,
    action: str,
    actor: User | None = None,
    actor_kind: str | None = None,
    obj: models.Model | None = None,
    summary: str = "",
    before: dict | None = None,
    after: dict | None = None,
    reason: str = "",
    occurred_at: datetime | None = None,
) -> AuditEvent:
    """Append an audit event. `actor_kind` defaults to staff for staff users, customer for others, system if none.

    `occurred_at`: when it happened, if not now (see `audit_occurred_at`); the row also keeps when it was recorded.
    """
    if actor_kind is None:
        actor_kind = ActorKind.SYSTEM if actor is None else (ActorKind.STAFF if actor.is_staff else ActorKind.CUSTOMER)
    return AuditEvent.objects.create(
        customer=customer,
        actor=actor,
        actor_kind=actor_kind,
        action=action,
        object_type=obj._meta.model_name if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        summary=summary[:300],
        before=before or {},
        after=after or {},
        reason=reason,
        occurred_at=occurred_at or occurred_now(),
    )
