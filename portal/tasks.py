"""Portal background work: thin callers of portal services."""

from celery import shared_task

from portal.services.health import customer_health_recompute, customer_health_recompute_marked


@shared_task(name="portal.customer_health_recompute")
def customer_health_recompute_task(customer_ids: list[int] | None = None) -> int:
    """Nightly for everyone (beat: customer-health-nightly), or for the customers given."""
    return customer_health_recompute(customer_ids=customer_ids)


@shared_task(name="portal.customer_health_recompute_marked")
def customer_health_recompute_marked_task(customer_ids: list[int] | None = None, customer_id: int | None = None) -> int:
    """The customers events marked (queued after commit, debounced; `customer_id` from messages queued before they
    carried a list), or the sweep of lost messages (beat: customer-health-marks-sweep)."""
    return customer_health_recompute_marked(customer_ids=customer_ids, customer_id=customer_id)
