"""Queue a reconcile after commit: what every service that changes entitlements calls inside its transaction."""

from django.utils import timezone

from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models.provisioning import ProvisioningRun, RunOutcome


def entitlements_reconcile_enqueue(*, customer_id: int, trigger: str = "") -> None:
    """Queue a reconcile of `customer_id` once the current transaction commits (never before; ids, not objects).

    Every service that changes subscriptions, seats, add-ons or seat assignments calls this inside its transaction.
    A queued ProvisioningRun row is written in the caller's transaction, so a committed change always leaves a trace
    the dashboard shows as pending and the drift check picks up even if the broker lost the message.
    """
    run = ProvisioningRun.objects.create(
        customer_id=customer_id, trigger=trigger[:200], outcome=RunOutcome.QUEUED, queued_at=timezone.now()
    )

    # The change is committed before the hand-off; if the broker refuses it, the queued run stays visible and the
    # drift check completes it (subscriptions/dispatch.py).
    enqueue_on_commit(
        "subscriptions.entitlements_reconcile", customer_id=customer_id, trigger=trigger[:200], run_id=run.pk
    )
