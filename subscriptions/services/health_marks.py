"""Debounced, event-driven health recompute: mark a customer's score out of date; the portal recomputes it soon.

    health_marks_record([customer_id], reason="payment.failed")   # in the transaction of the change

How it works (docs/metrics.md, "Recompute on events"):

* A mark is one `HealthRecomputeMark` row per customer, written in the caller's transaction (so it exists exactly
  when the change committed). Only a customer with no mark yet — or a mark older than `HEALTH_RECOMPUTE_REARM_SECONDS`,
  whose message was probably lost — is queued for a recompute, `portal.customer_health_recompute_marked(customer_ids=…)`
  after commit with a countdown of `HEALTH_RECOMPUTE_DELAY_SECONDS` (60), one message for up to `RECOMPUTE_BATCH`
  customers marked together (a drift check repairing thousands of customers sends a few messages, not thousands).
  Fifty events in that minute: one row, one message, one recompute.
* The recompute claims (deletes) the mark before it reads the facts, so an event after the claim marks again and is
  counted by a second recompute; a message whose mark is gone (a duplicate, or the nightly run got there first) does
  nothing.
* A broker that is down loses the message, not the mark: the sweep (`customer-health-marks-sweep`, every 10 minutes)
  recomputes marks older than the delay, and the nightly run claims every customer's mark as it scores them.

The task is named, not imported (this layer must not import portal; subscriptions/dispatch.py looks it up by name).
"""

from collections.abc import Iterable
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from subscriptions import clock
from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models import HealthRecomputeMark

RECOMPUTE_TASK = "portal.customer_health_recompute_marked"
RECOMPUTE_BATCH = 500  # customers per message: one recompute run scores them together (bench/health.py: 500 ≈ 0.15 s)

# Outbound events that move a score (the outbox hook in subscriptions/services/events.py marks their customers).
# Left out on purpose: invoice.issued and subscription renewals (the hourly billing run makes them for everyone; the
# nightly run covers them), tax exemptions and test events (no component reads them), customer.stage_changed
# (the recompute's own output), and payment.succeeded: no fact counts succeeded payments (failed ones in 30 days,
# overdue invoices and a past-due status do, and paying moves those through invoice.paid and subscription.updated).
# invoice.paid itself moves a score only when the invoice was overdue (see moves_health).
HEALTH_EVENT_TYPES = frozenset(
    {
        "subscription.created",
        "subscription.updated",
        "subscription.canceled",
        "entitlement.updated",
        "invoice.held",
        "invoice.paid",
        "invoice.voided",
        "invoice.overdue",
        "credit_note.issued",
        "payment.failed",
        "member.added",
        "member.removed",
    }
)
IGNORED_SUBSCRIPTION_CHANGES = frozenset({"renewal"})


def _seconds(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def moves_health(event_type: str, data: dict | None) -> bool:
    """Whether an outbound event of this type (and data) can change its customer's health score or stage."""
    if event_type not in HEALTH_EVENT_TYPES:
        return False
    data = data or {}
    if event_type == "invoice.paid":
        # Paid on time, it was never an overdue invoice (the only fact a paid invoice leaves): nothing moved. A
        # past-due subscription that the payment restores sends its own subscription.updated.
        due_on = data.get("due_on")
        return not due_on or date.fromisoformat(due_on) < clock.today()
    return not (event_type == "subscription.updated" and data.get("change") in IGNORED_SUBSCRIPTION_CHANGES)


def health_marks_record(customer_ids: Iterable[int | None], *, reason: str = "") -> list[int]:
    """Mark these customers' scores out of date (in the caller's transaction) and queue, after commit, one recompute
    for each customer not already waiting for one. Returns the customers a recompute was queued for. Three queries at
    most, whatever the number of customers."""
    ids = sorted({cid for cid in customer_ids if cid is not None})
    if not ids:
        return []
    now = timezone.now()
    rearm_before = now - timedelta(seconds=_seconds("HEALTH_RECOMPUTE_REARM_SECONDS", 600))
    existing = dict(HealthRecomputeMark.objects.filter(customer_id__in=ids).values_list("customer_id", "marked_at"))
    new = [cid for cid in ids if cid not in existing]
    stale = [cid for cid, marked_at in existing.items() if marked_at < rearm_before]
    if new:
        # ignore_conflicts: a concurrent transaction marking the same customer wins; both then queue (harmless).
        HealthRecomputeMark.objects.bulk_create(
            [HealthRecomputeMark(customer_id=cid, marked_at=now, reason=reason[:60]) for cid in new],
            ignore_conflicts=True,
        )
    if stale:
        HealthRecomputeMark.objects.filter(customer_id__in=stale).update(marked_at=now)
    queued = sorted(new + stale)
    delay = _seconds("HEALTH_RECOMPUTE_DELAY_SECONDS", 60)
    for start in range(0, len(queued), RECOMPUTE_BATCH):
        batch = queued[start : start + RECOMPUTE_BATCH]
        enqueue_on_commit(RECOMPUTE_TASK, customer_ids=batch, options={"countdown": delay})
    return queued


def health_marks_claim(*, customer_ids: list[int] | None = None, marked_before: datetime | None = None) -> list[int]:
    """Take (delete) the marks of `customer_ids`, or of every customer marked before `marked_before` (the sweep);
    returns the customers whose mark this call took, for it to recompute. Two callers never take the same mark."""
    with transaction.atomic():
        marks = HealthRecomputeMark.objects.select_for_update()
        if customer_ids is not None:
            marks = marks.filter(customer_id__in=customer_ids)
        if marked_before is not None:
            marks = marks.filter(marked_at__lt=marked_before)
        taken = list(marks.order_by("customer_id").values_list("customer_id", flat=True))
        if taken:
            HealthRecomputeMark.objects.filter(customer_id__in=taken).delete()
    return taken


def health_marks_restore(customer_ids: list[int], *, reason: str = "recompute failed") -> None:
    """Put back marks a failed recompute had taken (no message: the sweep retries them)."""
    now = timezone.now()
    HealthRecomputeMark.objects.bulk_create(
        [HealthRecomputeMark(customer_id=cid, marked_at=now, reason=reason[:60]) for cid in customer_ids],
        ignore_conflicts=True,
    )
