"""The billing run (hourly, Celery beat) and its fan-out finalize chunks."""

from celery import shared_task
from django.conf import settings

from billing.services import billing_run as run
from subscriptions import clock


@shared_task(name="billing.billing_run")
def billing_run_task(as_of: str | None = None, fan_out: bool | None = None) -> dict:
    """Hourly at a fixed minute (Celery beat): renew due subscriptions and draft/finalize their invoices. `as_of`: an
    ISO date or datetime; a date means its midnight and a datetime without an offset is read as UTC, as
    `manage.py billing_run --as-of` does. With `fan_out` (default: settings.BILLING_RUN_FINALIZE_FAN_OUT) the
    finalize chunks go to `billing.finalize_drafts_chunk` tasks, so every worker process shares the checks and
    issuing."""
    moment = clock.as_utc(as_of) if as_of else clock.now()
    if fan_out is None:
        fan_out = getattr(settings, "BILLING_RUN_FINALIZE_FAN_OUT", False)
    chunk_size = getattr(settings, "BILLING_RUN_CHUNK_SIZE", 500)
    return run.billing_run(as_of=moment, chunk_size=chunk_size, finalize_fan_out=fan_out).as_dict()


@shared_task(name="billing.finalize_drafts_chunk", bind=True, max_retries=5, default_retry_delay=30)
def finalize_drafts_chunk_task(self, invoice_ids: list[int]) -> dict:
    """Run the pre-issue checks on one chunk of the billing run's drafts and issue or hold them. Idempotent: only
    drafts never checked are touched, so a retried, duplicated or late task finalizes nothing twice."""
    try:
        issued, held, _ = run.finalize_drafts(invoice_ids=invoice_ids, chunk_size=max(1, len(invoice_ids)))
    except Exception as exc:  # e.g. the database went away; the drafts stay unchecked until a retry
        raise self.retry(exc=exc)
    return {"issued": issued, "held": held}
