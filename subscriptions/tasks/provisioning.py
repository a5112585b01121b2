"""Provisioning tasks (queue `provisioning`): reconcile one customer's entitlements, and the periodic drift check."""

import logging
import random

from celery import shared_task
from django.conf import settings

from subscriptions.provisioners import ProvisionerPermanentError, ProvisionerTransientError
from subscriptions.services.provisioning import entitlements_drift_check, entitlements_reconcile

logger = logging.getLogger(__name__)


def retry_backoff(retries: int) -> float:
    """Seconds before retry number `retries + 1`: exponential, capped, with "equal jitter" so that many customers
    failing together (a receiver outage) do not retry in lockstep."""
    base = float(getattr(settings, "PROVISIONING_RETRY_BASE_SECONDS", 2.0))
    cap = float(getattr(settings, "PROVISIONING_RETRY_MAX_SECONDS", 300.0))
    ceiling = min(cap, base * (2**retries))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


@shared_task(
    bind=True,
    name="subscriptions.entitlements_reconcile",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # bounded below by settings.PROVISIONING_MAX_RETRIES, read at run time
)
def entitlements_reconcile_task(self, customer_id: int, trigger: str = "", run_id: int | None = None):
    """Reconcile one customer's entitlements; retry transient backend errors with backoff, then give up visibly.

    One way through, worker or eager: a retry is Celery's `self.retry`. Run eagerly, Celery re-applies the retry
    itself only when eager errors do not propagate (`task_eager_propagates` off; the retry tests switch it off the
    way a worker behaves); with it on, the Retry reaches the caller like any other error."""
    max_retries = int(getattr(settings, "PROVISIONING_MAX_RETRIES", 6))
    retries = self.request.retries or 0
    try:
        run = entitlements_reconcile(
            customer_id=customer_id,
            trigger=trigger,
            attempt=retries + 1,
            run_id=run_id,
            final_attempt=retries >= max_retries,
        )
    except ProvisionerTransientError as exc:
        countdown = retry_backoff(retries)
        logger.warning(
            "Provisioning of customer %s failed (attempt %s), retrying in %.1fs: %s",
            customer_id,
            retries + 1,
            countdown,
            exc,
        )
        # A retry is a new attempt with its own run row, so run_id is not carried over.
        raise self.retry(
            args=(customer_id, trigger, None), kwargs={}, exc=exc, countdown=countdown, max_retries=max_retries
        )
    except ProvisionerPermanentError as exc:
        # Recorded on the run and the entitlements, support e-mailed: nothing more a retry could do.
        logger.error("Provisioning of customer %s failed permanently: %s", customer_id, exc)
        return None
    return run.pk if run is not None else None


@shared_task(name="subscriptions.entitlements_drift_check", acks_late=True, reject_on_worker_lost=True)
def entitlements_drift_check_task() -> dict:
    """Periodic (CELERY_BEAT_SCHEDULE): reconcile every customer whose applied entitlements drifted from desired."""
    result = entitlements_drift_check()
    logger.info("Entitlements drift check: %s", result)
    return result.__dict__
