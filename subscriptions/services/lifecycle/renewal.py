"""The renewal rules, in one place: `subscription_renew` and `subscription_renew_batch` both walk the boundaries here.

At each boundary at or before `as_of`, in order: a canceled subscription ends; one set to cancel at period end goes
canceled → ended (and its scheduled changes are canceled); otherwise the due scheduled changes apply, a trial
becomes active, and the next period starts on the billing anchor (`advance_period`). A renewal that started periods
bumps the version once and writes one "subscription.renewed" audit row (`renewal_close`).

How each step is written is the caller's (`RenewalSteps`): the single renewal writes it at once; the batch proves
with `is_plain_renewal` that only the period moves, and writes those rows in bulk.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from subscriptions.models import ActorKind, AuditEvent, Interval, Subscription, SubscriptionStatus
from subscriptions.money import format_date
from subscriptions.periods import next_boundary
from subscriptions.services.terms import PreviewLine, Terms, terms_lines

MAX_PERIODS_PER_RENEWAL = 120  # a safety stop: ten years of monthly periods in one catch-up


@dataclass(frozen=True)
class RenewedPeriod:
    """A period renewal started: billing drafts one invoice per period from exactly these lines (full period,
    from the subscription's snapshot terms at the period start; tax is billing's)."""

    period_start: datetime
    period_end: datetime
    currency: str
    package_slug: str
    package_name: str
    interval: str
    seats: int
    lines: tuple[PreviewLine, ...]
    amount_minor: int

    def to_dict(self) -> dict:
        return {
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "currency": self.currency,
            "package_slug": self.package_slug,
            "package_name": self.package_name,
            "interval": self.interval,
            "seats": self.seats,
            "lines": [line.to_dict() for line in self.lines],
            "amount_minor": self.amount_minor,
        }


@dataclass(frozen=True)
class RenewalResult:
    """What one `subscription_renew` call did.

    `periods` lists every period that started (oldest first; several if renewal caught up); billing invoices each.
    `ended` is True when the subscription was canceled at period end (or already canceled) and has now ended; then
    `periods` holds the periods started before that, if any. `applied_scheduled_change_ids` are the scheduled changes
    that took effect. `version` is the subscription's version afterwards.
    """

    subscription_id: int
    customer_id: int
    status: str
    ended: bool
    periods: tuple[RenewedPeriod, ...]
    applied_scheduled_change_ids: tuple[int, ...]
    version: int


class RenewalSteps(Protocol):
    """How the effects of a renewal are written (the caller holds the subscription's row lock)."""

    def end(self, subscription: Subscription, *, at: datetime, cancel_first: bool) -> None:
        """End the subscription at `at` (first canceling it, if it was only set to cancel at period end)."""

    def apply_scheduled(self, subscription: Subscription, *, boundary: datetime) -> list[int]:
        """Apply the scheduled changes due at `boundary`; returns their ids."""

    def end_trial(self, subscription: Subscription, *, at: datetime) -> None:
        """The trial is over: trialing → active."""

    def period_moved(self, subscription: Subscription) -> None:
        """The subscription (in memory) has moved to its next period."""

    def terms(self, subscription: Subscription) -> Terms:
        """The terms the period just started bills on."""


@dataclass
class Rollover:
    """What walking the boundaries did: the periods started, the scheduled changes applied, whether it ended."""

    periods: list[RenewedPeriod] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)
    ended: bool = False


def renewal_roll_over(subscription: Subscription, *, as_of: datetime, steps: RenewalSteps) -> Rollover:
    """Walk the subscription over every boundary at or before `as_of`, applying the renewal rules (module doc)."""
    rollover = Rollover()
    for _ in range(MAX_PERIODS_PER_RENEWAL):
        if subscription.current_period_end > as_of:
            break
        boundary = subscription.current_period_end
        if subscription.status == SubscriptionStatus.CANCELED or subscription.cancel_at_period_end:
            steps.end(subscription, at=boundary, cancel_first=subscription.status != SubscriptionStatus.CANCELED)
            rollover.ended = True
            break
        rollover.applied += steps.apply_scheduled(subscription, boundary=boundary)
        if subscription.status == SubscriptionStatus.TRIALING:
            steps.end_trial(subscription, at=boundary)
        advance_period(subscription, start=boundary)
        steps.period_moved(subscription)
        rollover.periods.append(renewed_period(subscription, steps.terms(subscription)))
    return rollover


def renewal_close(
    subscription: Subscription, rollover: Rollover, *, start_version: int
) -> tuple[RenewalResult, AuditEvent | None]:
    """After the walk: a renewal that started periods bumps the version (in memory) and is audited once; the
    returned audit row is unsaved (None if no period started). The caller writes both."""
    audit = None
    if rollover.periods:
        subscription.version += 1
        renewed_until = format_date(subscription.current_period_end, subscription.customer.country)
        # Built, not recorded (audit_record): the batch inserts a chunk's rows with one statement.
        audit = AuditEvent(
            customer_id=subscription.customer_id,
            actor=None,
            actor_kind=ActorKind.SYSTEM,
            action="subscription.renewed",
            object_type=subscription._meta.model_name,
            object_id=str(subscription.pk),
            summary=f"Renewed until {renewed_until}"[:300],
            before={"version": start_version},
            after={
                "periods": [[p.period_start.isoformat(), p.period_end.isoformat()] for p in rollover.periods],
                "applied_scheduled_change_ids": rollover.applied,
                "version": subscription.version,
            },
            reason="",
        )
    result = RenewalResult(
        subscription_id=subscription.pk,
        customer_id=subscription.customer_id,
        status=subscription.status,
        ended=rollover.ended,
        periods=tuple(rollover.periods),
        applied_scheduled_change_ids=tuple(rollover.applied),
        version=subscription.version,
    )
    return result, audit


def is_plain_renewal(subscription: Subscription, pending_scheduled: set[int]) -> bool:
    """A renewal whose walk only moves the period: no status change, no scheduled change to apply, nothing ending
    (`renewal_roll_over` then calls only `period_moved` and `terms`)."""
    return (
        subscription.status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)
        and not subscription.cancel_at_period_end
        and subscription.pk not in pending_scheduled
    )


def advance_period(subscription: Subscription, *, start: datetime) -> None:
    """Move the subscription (in memory) to the period starting at `start` and ending at the next boundary of its
    billing anchor (never "start + one interval": that drifts 31 Jan → 28 Feb → 28 Mar)."""
    subscription.current_period_start = start
    subscription.current_period_end = next_boundary(subscription.billing_anchor, subscription.interval, start)
    if subscription.interval == Interval.YEAR:
        subscription.committed_seats = subscription.seats  # a new annual term commits to today's seats


def renewed_period(subscription: Subscription, terms: Terms) -> RenewedPeriod:
    """The period the subscription has just moved to, with the lines it bills on `terms`."""
    start, end = subscription.current_period_start, subscription.current_period_end
    lines = tuple(terms_lines(terms, period_start=start, period_end=end, locale=subscription.customer.country))
    return RenewedPeriod(
        period_start=start,
        period_end=end,
        currency=subscription.currency,
        package_slug=subscription.package.slug,
        package_name=subscription.package.name,
        interval=subscription.interval,
        seats=subscription.seats,
        lines=lines,
        amount_minor=sum(line.amount_minor for line in lines),
    )
