"""Provisioning: reconcile desired entitlements with what is applied (owned by the provisioning work, issue 5)."""

from django.db import transaction


def entitlements_reconcile_enqueue(*, customer_id: int, trigger: str = "") -> None:
    """Queue a reconcile of `customer_id` once the current transaction commits (never before; ids, not objects).

    Every service that changes subscriptions, seats, add-ons or seat assignments calls this inside its transaction.
    """

    def _enqueue() -> None:
        from subscriptions.tasks import entitlements_reconcile_task

        entitlements_reconcile_task.delay(customer_id, trigger)

    if _task_available():
        transaction.on_commit(_enqueue)


def _task_available() -> bool:
    # Until the provisioning task exists this is a no-op, so callers can already call the enqueue hook.
    try:
        from subscriptions import tasks  # noqa: F401
    except ImportError:
        return False
    return True
