"""Accounting exports: building the file."""

from celery import shared_task

from billing.services import exports


@shared_task(name="billing.accounting_export_build", acks_late=True, reject_on_worker_lost=True)
def accounting_export_build_task(export_id: int) -> str:
    """Build an accounting export's file (idempotent: a finished export is left alone)."""

    return exports.accounting_export_build(export_id=export_id).status
