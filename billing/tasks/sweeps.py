"""Periodic catch-up of payment and export work whose after-commit hand-off a broker outage lost."""

from celery import shared_task

from billing.services import handoff_sweep


@shared_task(name="billing.lost_handoffs_sweep")
def lost_handoffs_sweep_task() -> dict:
    """Queue again the refunds, Stripe syncs and exports a broker outage lost (billing/services/handoff_sweep.py)."""
    result = handoff_sweep.lost_handoffs_sweep()
    return {
        "credit_note_refunds": len(result.credit_note_refunds),
        "stripe_customer_syncs": len(result.stripe_customer_syncs),
        "accounting_exports": len(result.accounting_exports),
    }
