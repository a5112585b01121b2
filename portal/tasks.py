"""Portal background work: thin callers of portal services."""

from celery import shared_task

from portal.services.health import customer_health_recompute


@shared_task(name="portal.customer_health_recompute")
def customer_health_recompute_task(customer_ids: list[int] | None = None) -> int:
    """Nightly for everyone (beat: customer-health-nightly), or for the customers an event touched."""
    return customer_health_recompute(customer_ids=customer_ids)
