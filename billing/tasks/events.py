"""Billing events recorded on a schedule."""

from celery import shared_task

from billing.services import events


@shared_task(name="billing.invoices_overdue_record", acks_late=True, reject_on_worker_lost=True)
def invoices_overdue_record_task() -> int:
    """Daily: `invoice.overdue` events for open invoices past their due date (once per invoice)."""

    return events.invoices_overdue_record()
