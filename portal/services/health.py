"""customer_health_recompute: score every customer (or some) chunk by chunk, with their effort-survey answers.

Lives in the portal layer because the "How easy was that?" answers are portal models (EffortSurveyResponse); the
scoring itself is billing.services.health. One query for the ids, then per chunk one query for the answers, two to
take the chunk's recompute marks, plus billing's constant number, so the cost grows with the number of chunks only
(bench/health.py).

customer_health_recompute_marked is the event-driven side (subscriptions/services/health_marks.py): the customers
whose scores events made out of date (one message for up to 500 marked together), or (the sweep) every mark older
than the debounce delay.
"""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings

from billing.services.health import CHUNK_SIZE, customer_health_compute
from portal.models import EffortSurveyResponse
from subscriptions import clock
from subscriptions.models import Customer
from subscriptions.services.health_marks import health_marks_claim, health_marks_restore

EFFORT_WINDOW_DAYS = 90


def customer_health_recompute(
    *, customer_ids: list[int] | None = None, chunk_size: int = CHUNK_SIZE, marks_claimed: bool = False
) -> int:
    """Store a new health snapshot for each customer (all when `customer_ids` is None); returns how many.
    Safe to run twice or concurrently: each run only appends snapshots; the newest one is current. Each chunk first
    takes its customers' recompute marks, so a pending event-driven recompute of them has nothing left to do
    (`marks_claimed`: the caller has just taken them, and puts them back should this fail)."""
    if customer_ids is None:
        customer_ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    since = clock.now() - timedelta(days=EFFORT_WINDOW_DAYS)
    done = 0
    for start in range(0, len(customer_ids), chunk_size):
        chunk = customer_ids[start : start + chunk_size]
        taken = [] if marks_claimed else health_marks_claim(customer_ids=chunk)
        effort = defaultdict(list)
        try:
            for customer_id, score in EffortSurveyResponse.objects.filter(
                customer_id__in=chunk, created_at__gte=since
            ).values_list("customer_id", "score"):
                effort[customer_id].append(score)
            done += len(customer_health_compute(customer_ids=chunk, effort_scores=dict(effort)))
        except Exception:
            health_marks_restore(taken)  # the sweep tries these again
            raise
    return done


def customer_health_recompute_marked(*, customer_ids: list[int] | None = None, customer_id: int | None = None) -> int:
    """Recompute the customers whose marks these are (those another run took first are left out), or, with none given,
    every customer marked longer ago than the debounce delay (the sweep after a broker outage). Returns how many.
    `customer_id` is the one-customer form of messages queued before they carried a list."""
    if customer_id is not None:
        customer_ids = [*(customer_ids or []), customer_id]
    if customer_ids is not None:
        ids = health_marks_claim(customer_ids=sorted(set(customer_ids)))
    else:
        delay = int(getattr(settings, "HEALTH_RECOMPUTE_DELAY_SECONDS", 60))
        ids = health_marks_claim(marked_before=clock.now() - timedelta(seconds=delay))
    if not ids:
        return 0
    try:
        return customer_health_recompute(customer_ids=ids, marks_claimed=True)
    except Exception:
        health_marks_restore(ids)
        raise
