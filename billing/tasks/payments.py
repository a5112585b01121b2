"""Payments: automatic collection, card refunds, keeping the Stripe customer in sync."""

from celery import shared_task

from billing.exceptions import PaymentProviderUnavailable
from billing.services import payments


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
