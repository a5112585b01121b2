"""Tasks after an invoice or credit note is issued: PDF, e-mail, then automatic collection."""

import logging

from celery import shared_task

from billing.services import documents, invoices, payments
from billing.services.delivery_sweep import issued_documents_sweep

logger = logging.getLogger(__name__)


@shared_task(name="billing.invoice_after_issue", bind=True, max_retries=5, default_retry_delay=30)
def invoice_after_issue_task(self, invoice_id: int) -> None:
    """Render the PDF, e-mail it, then collect the invoice automatically (`invoice_payment_collect`: the default
    card, with the Stripe backend; nothing with the manual one)."""
    try:
        documents.invoice_send_issued_email(invoice_id=invoice_id)
    except Exception as exc:  # rendering/mail failures are retried; the invoice itself is already issued
        logger.exception("invoice %s: PDF/e-mail failed", invoice_id)
        raise self.retry(exc=exc)
    payments.invoice_payment_collect(invoice_id=invoice_id)


@shared_task(name="billing.invoices_after_issue_fan_out")
def invoices_after_issue_fan_out_task(invoice_ids: list[int]) -> int:
    """Queue the after-issue task of each invoice a set-based finalize issued (one message per chunk from the billing
    run, one per invoice from here)."""
    return invoices.invoices_after_issue_queue(invoice_ids=invoice_ids)


@shared_task(name="billing.invoice_render_pdf")
def invoice_render_pdf_task(invoice_id: int) -> None:
    documents.invoice_render_pdf(invoice_id=invoice_id)


@shared_task(name="billing.credit_note_render_pdf")
def credit_note_render_pdf_task(credit_note_id: int) -> None:
    documents.credit_note_render_pdf(credit_note_id=credit_note_id)


@shared_task(name="billing.issued_documents_sweep")
def issued_documents_sweep_task() -> dict:
    """Queue again the after-issue work a broker outage lost (billing/services/delivery_sweep.py)."""
    result = issued_documents_sweep()
    return {"invoices": len(result.invoices), "credit_notes": len(result.credit_notes)}
