"""The one on-commit enqueue helper: services queue background work by task NAME, after their transaction commits.

    enqueue_on_commit("subscriptions.entitlements_reconcile", customer_id=7, trigger="seats", run_id=12)
    enqueue_on_commit("billing.invoice_render_pdf", invoice_id=3, options={"queue": "pdf", "countdown": 5})

* `task_name` is the task's registered name (`@shared_task(name=...)`); keyword arguments go to the task as kwargs;
  `options` (optional, keyword-only) goes to `apply_async` as is (`queue`, `countdown`, `eta`, `priority` ...).
* Services never import a tasks module (import-linter forbids it): the task is looked up by name in the Celery app's
  registry at send time. `apply_async` on the registered task honours CELERY_TASK_ALWAYS_EAGER, which `send_task`
  ignores, so tests run the task inline exactly where production would publish it.
* Nothing is sent before the commit, nothing if the transaction rolls back (Zulip's `queue_event_on_commit`).
* A broker that is down (longer than kombu's own publish retry) never turns a committed request into a 500: the error
  is logged with the task name and counted in `continuum_enqueue_failures_total{task}`, and the periodic sweeps
  (provisioning drift check, webhook delivery outbox, event outbox re-scan) do the missed work later. Every caller
  must therefore leave a durable trace of the pending work in its own transaction. Errors raised by the task itself
  (eager mode) are not broker errors and still propagate.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import current_app
from django.db import transaction
from prometheus_client import Counter

from subscriptions.transient import TRANSIENT_ERRORS

logger = logging.getLogger(__name__)

ENQUEUE_FAILURES = Counter(
    "continuum_enqueue_failures",
    "After-commit task hand-offs the broker refused, by task name (the periodic sweeps catch up).",
    ["task"],
)

# Errors of the publish, not of the work: the Django database errors are left out, so an eager task that fails on
# the database still fails loudly.
_DJANGO_DB_ERRORS = ("django.db.utils.OperationalError", "django.db.utils.InterfaceError")
BROKER_ERRORS: tuple[type[BaseException], ...] = tuple(
    error for error in TRANSIENT_ERRORS if f"{error.__module__}.{error.__qualname__}" not in _DJANGO_DB_ERRORS
)


def send_now(task_name: str, /, *, options: dict[str, Any] | None = None, **kwargs: Any) -> bool:
    """Hand the task to the broker now; False (logged, counted) when the broker refused it. Never raises for that."""
    try:
        task = current_app.tasks[task_name]
    except KeyError:
        # A wrong name is a programming error; make it loud in tests, but a committed request still must not fail.
        logger.error("enqueue: no task registered as %r", task_name)
        ENQUEUE_FAILURES.labels(task=task_name).inc()
        return False
    try:
        task.apply_async(kwargs=kwargs, **(options or {}))
    except BROKER_ERRORS:
        logger.exception("enqueue: the broker refused %s; the periodic sweep will catch up", task_name)
        ENQUEUE_FAILURES.labels(task=task_name).inc()
        return False
    return True


def enqueue_on_commit(task_name: str, /, *, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Queue `task_name(**kwargs)` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: send_now(task_name, options=options, **kwargs))
