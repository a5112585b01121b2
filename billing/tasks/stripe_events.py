"""Stripe webhook events: processing a stored event, and the sweep that queues lost ones again."""

from celery import shared_task

from billing.services import stripe_events
from subscriptions.transient import backoff_seconds


@shared_task(name="billing.stripe_event_process", bind=True, max_retries=8)
def stripe_event_process_task(self, event_id: int) -> str:
    # "retry": Stripe unreachable or a transient database error in a handler. Backoff 2 s, 4 s, 8 s … (capped at
    # 5 minutes, jittered), so a lock is waited out in seconds and an outage is not hammered.
    status = stripe_events.stripe_event_process(event_id=event_id)
    if status == "retry":
        raise self.retry(countdown=backoff_seconds(self.request.retries + 1))
    return status


@shared_task(name="billing.stripe_events_sweep")
def stripe_events_sweep_task() -> int:
    """Periodic (CELERY_BEAT_SCHEDULE): queue again the events whose processing task never ran."""
    return stripe_events.stripe_events_requeue_stale()
