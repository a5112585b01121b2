"""Dunning: the hourly retries of failed automatic collection."""

from celery import shared_task

from billing.services import dunning


@shared_task(name="billing.dunning_run")
def dunning_run_task() -> int:
    return dunning.dunning_run()
