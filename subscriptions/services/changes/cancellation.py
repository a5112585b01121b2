"""Canceling at the period end (nothing refunded, nothing renews) and undoing that before the period ends."""

from datetime import datetime
from typing import Unpack

from subscriptions.exceptions import CancellationError
from subscriptions.models import (
    Subscription,
    SubscriptionChange,
)
from subscriptions.money import format_date
from subscriptions.services.changes.apply import ApplyRequest, _apply
from subscriptions.services.changes.loading import _load, _now, _projected
from subscriptions.services.changes.plan import ChangePreview, _Plan, _preview, _require_changeable

Kind = SubscriptionChange.Kind


MAX_REASON_LENGTH = 2000


def _plan_cancel(subscription: Subscription, at: datetime, reason) -> _Plan:
    _require_changeable(subscription, at)
    if not isinstance(reason, str):
        raise CancellationError("The reason must be text.", field="reason")
    reason = reason.strip()
    ends = format_date(subscription.current_period_end, subscription.customer.country)  # as the customer writes dates
    if len(reason) > MAX_REASON_LENGTH:
        raise CancellationError(f"Please keep the reason under {MAX_REASON_LENGTH} characters.", field="reason")
    if subscription.cancel_at_period_end:
        raise CancellationError(f"Your subscription is already set to end on {ends}.")

    def write(sub: Subscription, when: datetime, actor) -> dict:
        sub.cancel_at_period_end = True
        sub.cancel_reason = reason
        return {}

    preview = _preview(
        Kind.CANCEL,
        subscription,
        at,
        immediate=False,
        lines=[],
        summary=f"Your subscription ends on {ends}; you keep everything until then",
    )
    return _Plan(
        preview,
        write,
        "subscription.cancel_scheduled",
        {"cancel_at_period_end": False},
        {"cancel_at_period_end": True, "reason": reason},
    )


def _plan_reactivate(subscription: Subscription, at: datetime) -> _Plan:
    _require_changeable(subscription, at)
    if not subscription.cancel_at_period_end:
        raise CancellationError("Your subscription is not set to end, so there is nothing to undo.")
    projected = _projected(subscription)

    def write(sub: Subscription, when: datetime, actor) -> dict:
        sub.cancel_at_period_end = False
        sub.cancel_reason = ""
        return {}

    preview = _preview(
        Kind.REACTIVATE,
        subscription,
        at,
        immediate=True,
        lines=[],
        next_terms=projected,
        summary="Your subscription continues and renews on "
        + format_date(subscription.current_period_end, subscription.customer.country),
    )
    return _Plan(
        preview,
        write,
        "subscription.cancel_undone",
        {"cancel_at_period_end": True, "reason": subscription.cancel_reason},
        {"cancel_at_period_end": False},
    )


def subscription_cancel_preview(
    *, subscription_id: int, reason: str = "", at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview canceling at the period end: nothing is refunded and nothing renews."""
    at = _now(at)
    return _plan_cancel(_load(subscription_id, subscription=subscription, at=at), at, reason).preview


def subscription_cancel_apply(*, reason: str = "", **request: Unpack[ApplyRequest]) -> SubscriptionChange:
    """Set the subscription to end at its period end (renewal then moves it active → canceled → ended)."""
    audit_reason = reason if isinstance(reason, str) else ""
    return _apply(Kind.CANCEL, lambda sub, when: _plan_cancel(sub, when, reason), audit_reason, **request)


def subscription_reactivate_preview(
    *, subscription_id: int, at: datetime | None = None, subscription: Subscription | None = None
) -> ChangePreview:
    """Preview undoing a scheduled cancellation."""
    at = _now(at)
    return _plan_reactivate(_load(subscription_id, subscription=subscription, at=at), at).preview


def subscription_reactivate_apply(**request: Unpack[ApplyRequest]) -> SubscriptionChange:
    """Undo a cancellation at period end; the subscription renews as before."""
    return _apply(Kind.REACTIVATE, _plan_reactivate, **request)
