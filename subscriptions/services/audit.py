"""The one way to write an audit row. Every service that changes something a customer or staff cares about calls it."""

from django.db import models

from subscriptions.models import ActorKind, AuditEvent, Customer, User


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
) -> AuditEvent:
    """Append an audit event. `actor_kind` defaults to staff for staff users, customer for others, system if none."""
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
    )
