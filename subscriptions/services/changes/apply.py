"""The apply engine every change shares: lock, idempotency key, version check, recompute the plan under the lock, write
it, record the `SubscriptionChange`, audit event and entitlements reconcile (see the package docstring)."""

from collections.abc import Callable
from datetime import datetime
from typing import Required, TypedDict

from django.db import transaction

from subscriptions.exceptions import (
    IdempotencyKeyReused,
    StalePreview,
)
from subscriptions.models import (
    Subscription,
    SubscriptionChange,
    User,
)
from subscriptions.services.audit import audit_record
from subscriptions.services.changes.loading import _load, _now
from subscriptions.services.changes.plan import _Plan
from subscriptions.services.events import subscription_event_record
from subscriptions.services.provisioning import entitlements_reconcile_enqueue

# Set on a change an `*_apply` call has just written (see `change_applied_now`).
_APPLIED_NOW = "change_applied_now"


def change_applied_now(change: SubscriptionChange) -> bool:
    """Whether `change` was written by the `*_apply` call that returned it, in the caller's still open transaction
    (False for the earlier change a replayed idempotency key returns): nothing else can have billed it yet, and its
    `subscription` is the row that call locked and wrote (with its package and customer)."""
    return change.__dict__.get(_APPLIED_NOW, False)


class ApplyRequest(TypedDict, total=False):
    """What every `*_apply` takes besides the change's own parameters (see the package docstring):
    `expected_version` from the preview, an optional `idempotency_key`, an optional `expected_amount_due_minor`
    (refuse if the amount due moved), who applies it (`actor`, `actor_kind`) and when (`at`, default now)."""

    subscription_id: Required[int]
    expected_version: Required[int]
    idempotency_key: str | None
    expected_amount_due_minor: int | None
    actor: Required[User | None]
    actor_kind: str | None
    at: datetime | None


def _apply(
    kind: str,
    plan: Callable[[Subscription, datetime], _Plan],
    reason: str = "",
    /,
    *,
    subscription_id: int,
    expected_version: int,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor: User | None,
    actor_kind: str | None = None,
    at: datetime | None = None,
) -> SubscriptionChange:
    """Apply the change `plan` computes (under the subscription lock) as a `kind` change, with `reason` for the
    audit event; the keyword arguments are an `ApplyRequest` (so a change that takes no reason refuses one)."""
    at = _now(at)
    with transaction.atomic():
        subscription = _load(subscription_id, lock=True, at=at)
        if idempotency_key:
            existing = SubscriptionChange.objects.filter(
                subscription=subscription, idempotency_key=idempotency_key
            ).first()
            if existing is not None:
                if existing.kind != kind:
                    raise IdempotencyKeyReused("This idempotency key was already used for a different change.")
                return existing
        if isinstance(expected_version, bool) or not isinstance(expected_version, int):
            raise StalePreview(field="version")
        if subscription.version != expected_version:
            raise StalePreview()
        computed = plan(subscription, at)
        preview = computed.preview
        if expected_amount_due_minor is not None and expected_amount_due_minor != preview.amount_due_now_minor:
            raise StalePreview(
                "The amount due changed since your preview (a new day started). Please review and confirm again."
            )
        extra_after = computed.write(subscription, at, actor) or {}
        subscription.version += 1
        subscription.save()
        change = SubscriptionChange.objects.create(
            subscription=subscription,
            kind=kind,
            idempotency_key=idempotency_key or None,
            actor=actor,
            result=preview.to_dict(),
            amount_due_now_minor=preview.amount_due_now_minor,
            currency=preview.currency,
            effective_at=preview.effective_at,
        )
        change.__dict__[_APPLIED_NOW] = True
        audit_record(
            customer=subscription.customer,
            actor=actor,
            actor_kind=actor_kind,
            action=computed.audit_action,
            obj=subscription,
            summary=preview.summary,
            before=computed.before,
            after={**computed.after, **extra_after, "change_id": change.pk, "version": subscription.version},
            reason=reason,
        )
        subscription_event_record(subscription, change=kind)
        entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger=f"subscription.{kind}")
    return change
