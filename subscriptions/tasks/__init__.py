"""Background work for subscriptions, one module per domain. Tasks take ids, call one service and own retries;
services are idempotent and enqueue by task name through subscriptions/dispatch.py. Registered names
(`subscriptions.<service>`) are what the beat schedule, CELERY_TASK_ROUTES and the Procfile queues refer to."""

from subscriptions.tasks.data_changes import customer_data_changes_prune_task
from subscriptions.tasks.provisioning import entitlements_drift_check_task, entitlements_reconcile_task, retry_backoff
from subscriptions.tasks.webhooks import (
    webhook_delivery_attempt_task,
    webhook_events_dispatch_task,
    webhook_outbox_rescan_task,
)

__all__ = [
    "customer_data_changes_prune_task",
    "entitlements_drift_check_task",
    "entitlements_reconcile_task",
    "retry_backoff",
    "webhook_delivery_attempt_task",
    "webhook_events_dispatch_task",
    "webhook_outbox_rescan_task",
]
