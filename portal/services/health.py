"""customer_health_recompute: score every customer (or some) chunk by chunk, with their effort-survey answers.

Lives in the portal layer because the "How easy was that?" answers are portal models (EffortSurveyResponse); the
scoring itself is billing.services.health. One query for the ids, then per chunk one query for the answers plus
billing's constant number, so the cost grows with the number of chunks only (bench/health.py).
"""

from collections import defaultdict
from datetime import timedelta

from billing.services.health import CHUNK_SIZE, customer_health_compute
from portal.models import EffortSurveyResponse
from subscriptions import clock
from subscriptions.models import Customer

EFFORT_WINDOW_DAYS = 90


def customer_health_recompute(*, customer_ids: list[int] | None = None, chunk_size: int = CHUNK_SIZE) -> int:
    """Store a new health snapshot for each customer (all when `customer_ids` is None); returns how many.
    Safe to run twice or concurrently: each run only appends snapshots; the newest one is current."""
    if customer_ids is None:
        customer_ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    since = clock.now() - timedelta(days=EFFORT_WINDOW_DAYS)
    done = 0
    for start in range(0, len(customer_ids), chunk_size):
        chunk = customer_ids[start : start + chunk_size]
        effort = defaultdict(list)
        for customer_id, score in EffortSurveyResponse.objects.filter(
            customer_id__in=chunk, created_at__gte=since
        ).values_list("customer_id", "score"):
            effort[customer_id].append(score)
        done += len(customer_health_compute(customer_ids=chunk, effort_scores=dict(effort)))
    return done
