"""What every change plan is made of: the `ChangePreview` it shows, the `_Plan` (preview plus the writes that make it
true), and the shared building blocks — preview lines, the changeable check, proration factor, canceling pending
scheduled changes."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from subscriptions.exceptions import SubscriptionNotChangeable
from subscriptions.models import (
    LIVE_STATUSES,
    Subscription,
    SubscriptionStatus,
    User,
)
from subscriptions.services.changes.loading import _current, _pending
from subscriptions.services.proration import proration_factor
from subscriptions.services.terms import PreviewLine, Terms


@dataclass(frozen=True)
class ChangePreview:
    """What a change will do, in the customer's words and in minor units of `currency`.

    `amount_due_now_minor` is the sum of the lines (negative means a credit to the customer); tax is added by billing.
    `next_recurring_amount_minor` is what each period costs from the next renewal on (0 when the subscription ends).
    `effective_at` is when the change takes effect (now, or the period end for scheduled changes); `immediate` says
    which. `version` must be passed back to the matching `*_apply` as `expected_version`. `recurring_interval` is
    the period `next_recurring_amount_minor` is for ("year" after a move to annual billing), `current_interval` the
    one of `current_recurring_amount_minor`.
    """

    kind: str
    subscription_id: int
    version: int
    currency: str
    effective_at: datetime
    immediate: bool
    lines: tuple[PreviewLine, ...]
    amount_due_now_minor: int
    next_recurring_amount_minor: int
    summary: str
    current_recurring_amount_minor: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    recurring_interval: str = ""
    current_interval: str = ""

    def to_dict(self) -> dict:
        """JSON-ready (stored as `SubscriptionChange.result`): datetimes as ISO 8601, amounts as integers."""
        return {
            "kind": self.kind,
            "subscription_id": self.subscription_id,
            "version": self.version,
            "currency": self.currency,
            "effective_at": self.effective_at.isoformat(),
            "immediate": self.immediate,
            "lines": [line.to_dict() for line in self.lines],
            "amount_due_now_minor": self.amount_due_now_minor,
            "next_recurring_amount_minor": self.next_recurring_amount_minor,
            "current_recurring_amount_minor": self.current_recurring_amount_minor,
            "recurring_interval": self.recurring_interval,
            "current_interval": self.current_interval,
            "summary": self.summary,
            "notes": list(self.notes),
        }


# A computed change: the preview plus the writes that make it true (run under the subscription lock).
Writer = Callable[[Subscription, datetime, User | None], dict]


@dataclass(frozen=True)
class _Plan:
    preview: ChangePreview
    write: Writer
    audit_action: str
    before: dict
    after: dict


def _require_changeable(subscription: Subscription, at: datetime) -> None:
    if subscription.status not in LIVE_STATUSES:
        raise SubscriptionNotChangeable(
            f"This subscription is {subscription.get_status_display().lower()} and can no longer be changed."
        )
    if at >= subscription.current_period_end:
        # Only reached when the on-demand renewal in `_load` could not move the period (it ends here, or `at` lies
        # beyond what one renewal catches up).
        raise SubscriptionNotChangeable("This subscription's period is over and it cannot be renewed.")


def _chargeable(subscription: Subscription) -> bool:
    # A trial is free: changes during it take effect without charge; the first invoice uses the new terms.
    return subscription.status != SubscriptionStatus.TRIALING


def _factor(subscription: Subscription, at: datetime):
    return proration_factor(
        at=at, period_start=subscription.current_period_start, period_end=subscription.current_period_end
    )


def _line(
    *,
    description: str,
    start: datetime,
    end: datetime,
    quantity: int,
    unit_amount_minor: int,
    amount_minor: int,
    proration: bool,
    sku: tuple[str, str],
) -> PreviewLine:
    return PreviewLine(
        description=description,
        period_start=start,
        period_end=end,
        quantity=quantity,
        unit_amount_minor=unit_amount_minor,
        amount_minor=amount_minor,
        proration=proration,
        sku_code=sku[0],
        tax_category=sku[1],
    )


def _preview(
    kind: str,
    subscription: Subscription,
    at: datetime,
    *,
    immediate: bool,
    lines: list[PreviewLine],
    summary: str,
    next_terms: Terms | None = None,
    next_recurring: int | None = None,
    notes: list[str] | None = None,
) -> ChangePreview:
    """The preview of a `kind` change to `subscription` at `at`. What it costs from the next renewal on is
    `next_terms` (its recurring amount and interval), or `next_recurring` when given (0 when nothing renews)."""
    if next_recurring is None:
        next_recurring = next_terms.recurring_amount_minor if next_terms is not None else 0
    return ChangePreview(
        kind=kind,
        subscription_id=subscription.pk,
        version=subscription.version,
        currency=subscription.currency,
        effective_at=at if immediate else subscription.current_period_end,
        immediate=immediate,
        lines=tuple(lines),
        amount_due_now_minor=sum(line.amount_minor for line in lines),
        next_recurring_amount_minor=next_recurring,
        summary=summary,
        current_recurring_amount_minor=_current(subscription).recurring_amount_minor,
        notes=tuple(notes or ()),
        recurring_interval=(next_terms.interval if next_terms is not None else "") or subscription.interval,
        current_interval=subscription.interval,
    )


def _cancel_pending(subscription: Subscription, kinds: tuple[str, ...], at: datetime, **payload_match) -> int:
    count = 0
    for change in _pending(subscription):
        if change.kind in kinds and all(str(change.payload.get(k)) == str(v) for k, v in payload_match.items()):
            change.canceled_at = at
            change.save(update_fields=["canceled_at"])
            count += 1
    return count
