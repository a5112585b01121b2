"""Revenue metrics: the nightly recomputation of the stored monthly aggregates (docs/metrics.md)."""

from celery import shared_task

from billing.services import revenue_metrics


@shared_task(name="billing.revenue_metrics_update")
def revenue_metrics_update_task() -> list[str]:
    """Nightly (Celery beat `billing-revenue-metrics-nightly`): the previous and the current month."""
    return [month.isoformat() for month in revenue_metrics.revenue_months_nightly()]
