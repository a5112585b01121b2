"""Billing background work. Tasks take ids, call one service, and can run twice or late without harm."""

import logging

from celery import shared_task

from subscriptions import clock

logger = logging.getLogger(__name__)


@shared_task(name="billing.invoice_after_issue", bind=True, max_retries=5, default_retry_delay=30)
def invoice_after_issue_task(self, invoice_id: int) -> None:
    """Render the PDF, e-mail it, then hand the invoice to payment collection (if the payments work offers it)."""
    from billing.services.documents import invoice_send_issued_email

    try:
        invoice_send_issued_email(invoice_id=invoice_id)
    except Exception as exc:  # rendering/mail failures are retried; the invoice itself is already issued
        logger.exception("invoice %s: PDF/e-mail failed", invoice_id)
        raise self.retry(exc=exc)
    _collect_payment(invoice_id)


def _collect_payment(invoice_id: int) -> None:
    try:
        from billing.services import payments
    except ImportError:
        return
    collect = getattr(payments, "invoice_payment_collect", None)
    if collect is not None:
        collect(invoice_id=invoice_id)


@shared_task(name="billing.invoice_render_pdf")
def invoice_render_pdf_task(invoice_id: int) -> None:
    from billing.services.documents import invoice_render_pdf

    invoice_render_pdf(invoice_id=invoice_id)


@shared_task(name="billing.credit_note_render_pdf")
def credit_note_render_pdf_task(credit_note_id: int) -> None:
    from billing.services.documents import credit_note_render_pdf

    credit_note_render_pdf(credit_note_id=credit_note_id)


@shared_task(name="billing.billing_run")
def billing_run_task(as_of: str | None = None, fan_out: bool | None = None) -> dict:
    """Hourly at a fixed minute (Celery beat): renew due subscriptions and draft/finalize their invoices. `as_of`: an
    ISO date or datetime; a date means its midnight and a datetime without an offset is read as UTC, as
    `manage.py billing_run --as-of` does. With `fan_out` (default: settings.BILLING_RUN_FINALIZE_FAN_OUT) the
    finalize chunks go to `billing.finalize_drafts_chunk` tasks, so every worker process shares the checks and
    issuing."""
    from django.conf import settings

    from billing.services.billing_run import billing_run

    moment = clock.as_utc(as_of) if as_of else clock.now()
    if fan_out is None:
        fan_out = getattr(settings, "BILLING_RUN_FINALIZE_FAN_OUT", False)
    chunk_size = getattr(settings, "BILLING_RUN_CHUNK_SIZE", 500)
    return billing_run(as_of=moment, chunk_size=chunk_size, finalize_fan_out=fan_out).as_dict()


@shared_task(name="billing.finalize_drafts_chunk", bind=True, max_retries=5, default_retry_delay=30)
def finalize_drafts_chunk_task(self, invoice_ids: list[int]) -> dict:
    """Run the pre-issue checks on one chunk of the billing run's drafts and issue or hold them. Idempotent: only
    drafts never checked are touched, so a retried, duplicated or late task finalizes nothing twice."""
    from billing.services.billing_run import finalize_drafts

    try:
        issued, held, _ = finalize_drafts(invoice_ids=invoice_ids, chunk_size=max(1, len(invoice_ids)))
    except Exception as exc:  # e.g. the database went away; the drafts stay unchecked until a retry
        raise self.retry(exc=exc)
    return {"issued": issued, "held": held}


@shared_task(name="billing.tax_exemptions_daily")
def tax_exemptions_daily_task() -> dict:
    """Daily (Celery beat): expire exemptions at their expiry date; remind 30 and 7 days before."""
    from billing.services.exemptions import tax_exemption_send_reminders, tax_exemptions_expire_due

    return {"expired": tax_exemptions_expire_due(), "reminded": tax_exemption_send_reminders()}


@shared_task(name="billing.accounting_export_build", acks_late=True, reject_on_worker_lost=True)
def accounting_export_build_task(export_id: int) -> str:
    """Build an accounting export's file (idempotent: a finished export is left alone)."""
    from billing.services.exports import accounting_export_build

    return accounting_export_build(export_id=export_id).status


@shared_task(name="billing.invoices_overdue_record", acks_late=True, reject_on_worker_lost=True)
def invoices_overdue_record_task() -> int:
    """Daily: `invoice.overdue` events for open invoices past their due date (once per invoice)."""
    from billing.services.events import invoices_overdue_record

    return invoices_overdue_record()
