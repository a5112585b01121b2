"""Outbound webhook tasks (queue `webhooks`, CELERY_TASK_ROUTES): a slow receiver never delays enablement or billing."""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from subscriptions.services.webhooks import webhook_delivery_attempt, webhook_events_dispatch, webhook_outbox_rescan


@shared_task(name="subscriptions.webhook_events_dispatch", acks_late=True, reject_on_worker_lost=True)
def webhook_events_dispatch_task(public_ids: list[str]) -> int:
    """Fan committed outbox events out to their endpoints and queue the first attempts."""
    delivery_ids = webhook_events_dispatch(public_ids=public_ids)
    for delivery_id in delivery_ids:
        webhook_delivery_attempt_task.delay(delivery_id)
    return len(delivery_ids)


@shared_task(name="subscriptions.webhook_delivery_attempt", acks_late=True, reject_on_worker_lost=True)
def webhook_delivery_attempt_task(delivery_id: int) -> str:
    """One attempt; a near retry is queued with its countdown, later ones are picked up by the outbox re-scan (long
    countdowns do not survive a broker's visibility timeout)."""
    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    if delivery is None:
        return "skipped"
    if delivery.status == "pending" and delivery.next_attempt_at is not None:
        countdown = (delivery.next_attempt_at - timezone.now()).total_seconds()
        if countdown <= float(getattr(settings, "WEBHOOK_DIRECT_RETRY_MAX_SECONDS", 600)):
            webhook_delivery_attempt_task.apply_async((delivery_id,), countdown=max(0.0, countdown))
    return delivery.status


@shared_task(name="subscriptions.webhook_outbox_rescan", acks_late=True, reject_on_worker_lost=True)
def webhook_outbox_rescan_task() -> int:
    """Periodic: events whose after-commit message was lost, retries that are due, deliveries of a dead worker."""
    due = webhook_outbox_rescan()
    for delivery_id in due:
        webhook_delivery_attempt_task.delay(delivery_id)
    return len(due)
