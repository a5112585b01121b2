"""TEMPORARY stand-in for subscriptions.dispatch (written on branch h16s): delete this module and import
`from subscriptions.dispatch import enqueue_on_commit` once that commit is cherry-picked."""

import logging

from celery import current_app
from django.db import transaction
from kombu.exceptions import OperationalError

logger = logging.getLogger(__name__)


def enqueue_on_commit(task_name: str, /, **kwargs) -> None:
    """Queue the Celery task registered as `task_name` with `kwargs` once the current transaction commits."""

    def _send() -> None:
        try:
            current_app.tasks[task_name].apply_async(kwargs=kwargs)
        except (OperationalError, OSError):
            logger.exception("could not queue %s %s", task_name, kwargs)

    transaction.on_commit(_send)
