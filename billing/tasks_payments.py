"""Celery tasks of the payments work. Each takes ids and calls one service; the services are idempotent, so a task
may run twice, late, or concurrently with itself. Registered from BillingConfig.ready()."""

from celery import shared_task

from billing.exceptions import PaymentProviderUnavailable
from billing.services import dunning, payments, stripe_events
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


@shared_task(name="billing.invoice_collect")
def invoice_collect_task(invoice_id: int) -> int | None:
    payment = payments.invoice_collect(invoice_id=invoice_id)
    return payment.pk if payment else None


@shared_task(name="billing.credit_note_refund", bind=True, max_retries=8, default_retry_delay=60)
def credit_note_refund_task(self, credit_note_id: int) -> int | None:
    # Stripe unreachable: the refund row stays pending and the retry resends it with the same idempotency key.
    try:
        refund = payments.credit_note_refund(credit_note_id=credit_note_id)
    except PaymentProviderUnavailable as exc:
        raise self.retry(exc=exc)
    return refund.pk if refund else None


@shared_task(name="billing.stripe_customer_sync", bind=True, max_retries=5, default_retry_delay=60)
def stripe_customer_sync_task(self, customer_id: int) -> bool:
    try:
        return payments.stripe_customer_sync(customer_id=customer_id)
    except PaymentProviderUnavailable as exc:
        raise self.retry(exc=exc)


@shared_task(name="billing.dunning_run")
def dunning_run_task() -> int:
    return dunning.dunning_run()
