"""Periodic prune of the customer data-version rows (subscriptions/services/data_changes.py)."""

import logging

from celery import shared_task

from subscriptions.services.data_changes import customer_data_changes_prune

logger = logging.getLogger(__name__)


@shared_task(name="subscriptions.customer_data_changes_prune", acks_late=True, reject_on_worker_lost=True)
def customer_data_changes_prune_task() -> dict:
    """Periodic (CELERY_BEAT_SCHEDULE): one row per customer left, so reading a version stays one short seek."""
    result = customer_data_changes_prune()
    logger.info("Customer data changes pruned: %s", result)
    return result
