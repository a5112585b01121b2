"""The use cases of reconciling: one customer (the task's path) and many in one transaction (the drift check's).

The model is desired-state reconciliation, so every run can happen twice, concurrently, late or after a crash and
still converge: a run locks the customer's ProvisioningState row, recomputes the desired entitlements from all live
subscriptions, diffs them against the applied values, pushes only the difference (as absolute target values, so a
repeated push is harmless) and records the outcome on a ProvisioningRun — all in one transaction (engine.py).
"""

from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from subscriptions.models.provisioning import ProvisioningRun, RunOutcome
from subscriptions.provisioners import Provisioner, ProvisionerTransientError, provisioner_get
from subscriptions.services.provisioning.engine import reconcile_locked
from subscriptions.services.provisioning.enqueue import entitlements_reconcile_enqueue
from subscriptions.services.provisioning.notify import notify_support
from subscriptions.services.provisioning.storage import ensure_states, lock_states


def entitlements_reconcile(
    *,
    customer_id: int,
    trigger: str = "",
    attempt: int = 1,
    run_id: int | None = None,
    final_attempt: bool = False,
    provisioner: Provisioner | None = None,
) -> ProvisioningRun | None:
    """Make the customer's applied entitlements equal the desired ones; record the attempt as a ProvisioningRun.

    Guarantees: holds the customer's ProvisioningState row lock for the whole run (two runs never interleave);
    pushes only the difference; idempotent — a run whose queued row is already finished (a duplicate delivery) does
    nothing, and a second run finds nothing to change. On a transient backend error the run is recorded as retrying
    and ProvisionerTransientError is raised for the task to retry; on a permanent one (or a transient one on the
    final attempt) the entitlements are marked failed, support is e-mailed, and ProvisionerPermanentError is raised.
    Returns the run, or None if the customer no longer exists.
    """
    provisioner = provisioner or provisioner_get()
    ensure_states([customer_id])
    with transaction.atomic():
        now = timezone.now()
        if not lock_states([customer_id], now):
            return None
        runs: dict[int, ProvisioningRun] = {}
        if run_id is not None:
            run = ProvisioningRun.objects.select_for_update().filter(pk=run_id, customer_id=customer_id).first()
            if run is not None and run.outcome not in (RunOutcome.QUEUED, RunOutcome.RUNNING):
                return run  # duplicate or late delivery: a run already covered this change
            if run is not None:
                runs[customer_id] = run
        outcome = reconcile_locked(
            [customer_id],
            trigger=trigger,
            attempt=attempt,
            provisioner=provisioner,
            runs=runs,
            final_attempt=final_attempt,
            now=now,
        )[customer_id]
        notify_support([outcome])
    if outcome.error is not None:
        raise outcome.error
    return outcome.run


def entitlements_reconcile_many(
    *, customer_ids: Iterable[int], trigger: str, provisioner: Provisioner | None = None
) -> dict[int, ProvisioningRun]:
    """Reconcile several customers in one transaction (the drift check's path for the built-in backend).

    Same guarantees as entitlements_reconcile per customer; a backend error for one customer is recorded on its run
    and that customer is re-queued through the task, which owns retries.
    """
    provisioner = provisioner or provisioner_get()
    customer_ids = sorted(set(customer_ids))
    if not customer_ids:
        return {}
    ensure_states(customer_ids)
    with transaction.atomic():
        now = timezone.now()
        locked = lock_states(customer_ids, now)
        outcomes = reconcile_locked(
            locked, trigger=trigger, attempt=1, provisioner=provisioner, runs={}, final_attempt=False, now=now
        )
        notify_support(outcomes.values())
        for customer_id, outcome in outcomes.items():
            if isinstance(outcome.error, ProvisionerTransientError):
                entitlements_reconcile_enqueue(customer_id=customer_id, trigger=f"retry after: {trigger}")
    return {customer_id: outcome.run for customer_id, outcome in outcomes.items()}
