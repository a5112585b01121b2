"""Billing background work, one module per domain. A task takes ids, calls one service and owns its retries; the
services are idempotent, so a task may run twice, late, or concurrently with itself. Each task keeps its registered
name (`billing.<service>`): the beat schedule and the queue routes in portal/settings.py use those names, and
services queue tasks by name through the on-commit helper, never by importing this package.

Importing the package registers every task (Celery's autodiscovery imports `billing.tasks`). Tasks call services
through their module (`exemptions.tax_exemptions_expire_due()`), so the name is looked up when the task runs.
"""

from billing.tasks.billing_run import billing_run_task, finalize_drafts_chunk_task
from billing.tasks.dunning import dunning_run_task
from billing.tasks.events import invoices_overdue_record_task
from billing.tasks.exemptions import tax_exemptions_daily_task
from billing.tasks.exports import accounting_export_build_task
from billing.tasks.invoices import (
    credit_note_render_pdf_task,
    invoice_after_issue_task,
    invoice_render_pdf_task,
    invoices_after_issue_fan_out_task,
    issued_documents_sweep_task,
)
from billing.tasks.payments import credit_note_refund_task, invoice_collect_task, stripe_customer_sync_task
from billing.tasks.revenue_metrics import revenue_metrics_update_task
from billing.tasks.stripe_events import stripe_event_process_task, stripe_events_sweep_task
from billing.tasks.sweeps import lost_handoffs_sweep_task

__all__ = [
    "accounting_export_build_task",
    "billing_run_task",
    "credit_note_refund_task",
    "credit_note_render_pdf_task",
    "dunning_run_task",
    "finalize_drafts_chunk_task",
    "invoice_after_issue_task",
    "invoices_after_issue_fan_out_task",
    "issued_documents_sweep_task",
    "invoice_collect_task",
    "revenue_metrics_update_task",
    "invoice_render_pdf_task",
    "lost_handoffs_sweep_task",
    "invoices_overdue_record_task",
    "stripe_customer_sync_task",
    "stripe_event_process_task",
    "stripe_events_sweep_task",
    "tax_exemptions_daily_task",
]
