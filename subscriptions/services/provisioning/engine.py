"""The body of a reconcile, as named steps; the callers (reconcile.py) hold the customers' ProvisioningState locks.

A run, for all its customers at once: note the queued runs it covers → load the entitlement rows → per customer,
diff desired against applied, record the desired values on the rows and open the run → push the differences
→ write rows, events and runs → settle (health marks, superseded queued runs, last success).
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Max
from django.utils import timezone

from subscriptions.models.provisioning import (
    Entitlement,
    EntitlementState,
    ProvisioningRun,
    ProvisioningState,
    RunOutcome,
)
from subscriptions.prebuilt import prebuilt
from subscriptions.provisioners import Provisioner, ProvisionerError, ProvisionerPermanentError
from subscriptions.services.events import entitlement_event, events_record_many
from subscriptions.services.health_marks import health_marks_record
from subscriptions.services.provisioning.desired import DesiredEntitlement, EntitlementKey, desired_for_customers
from subscriptions.services.provisioning.diff import AppliedEntitlement, EntitlementChange, entitlements_diff
from subscriptions.services.provisioning.state import EVENT_STATES, entitlement_transition
from subscriptions.services.provisioning.storage import bulk_write

_ENTITLEMENT_FIELDS = [
    "value_kind",
    "package",
    "desired_value",
    "applied_value",
    "granted_by",
    "state",
    "error",
    "activated_at",
    "updated_at",
]
_RUN_FIELDS = ["backend", "attempt", "started_at", "finished_at", "duration_ms", "outcome", "diff", "error", "trigger"]


@dataclass
class Outcome:
    run: ProvisioningRun
    error: ProvisionerError | None = None
    newly_failed: list[Entitlement] = field(default_factory=list)


@dataclass
class _Push:
    """One customer's differences to push: the keys that change, and which of them were failed before."""

    customer_id: int
    changed_keys: set[EntitlementKey]
    was_failed: dict[EntitlementKey, bool]


@dataclass
class _Batch:
    """What one run has read and is about to write, for all of its customers."""

    now: datetime
    attempt: int
    rows: dict[int, dict[EntitlementKey, Entitlement]]
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    to_create: list[Entitlement] = field(default_factory=list)
    to_update: dict[int, Entitlement] = field(default_factory=dict)
    new_runs: list[ProvisioningRun] = field(default_factory=list)
    to_push: list[_Push] = field(default_factory=list)

    def changed(self, row: Entitlement) -> None:
        if row.pk:
            self.to_update[row.pk] = row


def reconcile_locked(
    customer_ids: list[int],
    *,
    trigger: str,
    attempt: int,
    provisioner: Provisioner,
    runs: dict[int, ProvisioningRun],
    final_attempt: bool,
    now: datetime,
) -> dict[int, Outcome]:
    """The body of a reconcile; the caller holds the customers' ProvisioningState locks inside one transaction."""
    covered = _queued_runs_covered(customer_ids)
    batch = _load(customer_ids, now=now, attempt=attempt)
    desired_by_customer = desired_for_customers(customer_ids, now=now)
    for customer_id in customer_ids:
        changes = _plan_customer(batch, customer_id, desired_by_customer[customer_id])
        _open_run(batch, customer_id, runs.get(customer_id), changes, trigger=trigger, backend=provisioner.name)

    # Runs get their ids before a remote push, so the receiver can use the run id to recognise a repeated delivery;
    # the built-in backend needs none, and its runs are written once, finished (the drift check's hot path).
    early = provisioner.name != "builtin"
    if batch.new_runs and early:
        ProvisioningRun.objects.bulk_create(batch.new_runs)
    for push in batch.to_push:
        _push(batch, push, provisioner, final_attempt=final_attempt)

    _write_entitlements(batch)
    finished = _write_runs(batch, runs_written=early)
    _settle(batch, covered, finished=finished)
    return batch.outcomes


def _queued_runs_covered(customer_ids: list[int]) -> dict[int, int]:
    """The newest queued run per customer. Queued runs visible now were committed after their change did, so this
    run's reads see those changes, and a successful run supersedes them."""
    return dict(_newest_queued_runs().filter(customer_id__in=customer_ids))


@prebuilt
def _newest_queued_runs():
    """(customer, newest queued run), grouped: built once per process (subscriptions.prebuilt)."""
    return (
        ProvisioningRun.objects.filter(outcome=RunOutcome.QUEUED)
        .values("customer_id")
        .annotate(last=Max("id"))
        .values_list("customer_id", "last")
    )


def _load(customer_ids: list[int], *, now: datetime, attempt: int) -> _Batch:
    rows: dict[int, dict[EntitlementKey, Entitlement]] = defaultdict(dict)
    for row in Entitlement.objects.filter(customer_id__in=customer_ids):
        rows[row.customer_id][row.key] = row
    return _Batch(now=now, attempt=attempt, rows=rows)


def _plan_customer(
    batch: _Batch, customer_id: int, desired: dict[EntitlementKey, DesiredEntitlement]
) -> list[EntitlementChange]:
    """Diff the customer's desired entitlements against the applied ones and record the desired values on the rows
    (opening the rows that need work). Returns the changes to push."""
    rows = batch.rows[customer_id]
    applied = {
        key: AppliedEntitlement(row.value_kind, row.applied_value)
        for key, row in rows.items()
        if row.applied_value is not None
    }
    changes = entitlements_diff(desired, applied)
    changed_keys = {change.key for change in changes}
    was_failed = {key: row.state == EntitlementState.FAILED for key, row in rows.items()}
    for key in set(desired) | set(rows):
        _record_desired(batch, customer_id, key, desired.get(key), changing=key in changed_keys)
    if changes:
        batch.to_push.append(_Push(customer_id, changed_keys, was_failed))
    return changes


def _record_desired(
    batch: _Batch, customer_id: int, key: EntitlementKey, want: DesiredEntitlement | None, *, changing: bool
) -> None:
    rows = batch.rows[customer_id]
    row = rows.get(key)
    if row is None:
        row = Entitlement(
            customer_id=customer_id,
            feature_key=key[0],
            user_id=key[1],
            package_id=want.package_id,
            value_kind=want.kind,
            desired_value=want.value,
            granted_by=list(want.granted_by),
            state=EntitlementState.PENDING,
        )
        rows[key] = row
        batch.to_create.append(row)
        return
    dirty = False
    new_desired = want.value if want else None
    new_granted = list(want.granted_by) if want else []
    if row.desired_value != new_desired or row.granted_by != new_granted:
        row.desired_value, row.granted_by = new_desired, new_granted
        dirty = True
    if want is not None and row.value_kind != want.kind:
        row.value_kind = want.kind
        dirty = True
    if want is not None and want.package_id and row.package_id != want.package_id:
        row.package_id = want.package_id
        dirty = True
    if changing:
        # A failed row stays failed until a push succeeds: support was told once, and is not told again.
        if row.state != EntitlementState.FAILED:
            dirty |= entitlement_transition(row, EntitlementState.PENDING if want else EntitlementState.REVOKING)
    else:
        # Already in the desired state (e.g. a failed row whose value was applied after all).
        done = EntitlementState.ACTIVE if want else EntitlementState.REVOKED
        if row.state != done or row.error:
            entitlement_transition(row, done)
            row.error = ""
            dirty = True
    if dirty:
        batch.changed(row)


def _open_run(
    batch: _Batch,
    customer_id: int,
    run: ProvisioningRun | None,
    changes: list[EntitlementChange],
    *,
    trigger: str,
    backend: str,
) -> None:
    """The customer's run for this attempt: the queued one being worked on, or a new one."""
    if run is None:
        run = ProvisioningRun(customer_id=customer_id, trigger=trigger[:200], queued_at=batch.now)
        batch.new_runs.append(run)
    run.backend = backend
    run.attempt = batch.attempt
    run.started_at = run.started_at or batch.now
    run.diff = [change.as_json() for change in changes]
    run.outcome = RunOutcome.RUNNING if changes else RunOutcome.NOOP
    batch.outcomes[customer_id] = Outcome(run=run)


def _push(batch: _Batch, push: _Push, provisioner: Provisioner, *, final_attempt: bool) -> None:
    """Push one customer's differences and record the result on its run and rows."""
    outcome = batch.outcomes[push.customer_id]
    run = outcome.run
    rows = batch.rows[push.customer_id]
    try:
        provisioner.push(customer_id=push.customer_id, run_id=run.pk, changes=run.diff)
    except ProvisionerError as exc:
        _push_failed(batch, push, outcome, exc, final_attempt=final_attempt)
        return
    run.outcome = RunOutcome.APPLIED
    for key in push.changed_keys:
        row = rows[key]
        row.applied_value = row.desired_value
        row.error = ""
        if row.desired_value is None:
            entitlement_transition(row, EntitlementState.REVOKED)
        else:
            entitlement_transition(row, EntitlementState.ACTIVE)
            row.activated_at = batch.now
        batch.changed(row)


def _push_failed(batch: _Batch, push: _Push, outcome: Outcome, exc: ProvisionerError, *, final_attempt: bool) -> None:
    """A transient error leaves the run retrying; a permanent one (or any on the final attempt) fails the rows."""
    permanent = isinstance(exc, ProvisionerPermanentError) or final_attempt
    if permanent and not isinstance(exc, ProvisionerPermanentError):
        outcome.error = ProvisionerPermanentError(f"Gave up after {batch.attempt} attempts: {exc}")
    else:
        outcome.error = exc
    run = outcome.run
    run.outcome = RunOutcome.FAILED if permanent else RunOutcome.RETRYING
    run.error = str(outcome.error)
    rows = batch.rows[push.customer_id]
    for key in push.changed_keys:
        row = rows[key]
        if permanent:
            entitlement_transition(row, EntitlementState.FAILED)
            if push.was_failed.get(key) is not True:
                outcome.newly_failed.append(row)
        row.error = str(outcome.error)
        batch.changed(row)


def _write_entitlements(batch: _Batch) -> None:
    if batch.to_create:
        Entitlement.objects.bulk_create(batch.to_create)
    if batch.to_update:
        for row in batch.to_update.values():
            row.updated_at = batch.now
        bulk_write(Entitlement, list(batch.to_update.values()), _ENTITLEMENT_FIELDS)
    events_record_many(  # entitlement.updated for every row this run applied, revoked or gave up on
        entitlement_event(batch.rows[push.customer_id][key])
        for push in batch.to_push
        for key in push.changed_keys
        if batch.rows[push.customer_id][key].state in EVENT_STATES
    )


def _write_runs(batch: _Batch, *, runs_written: bool) -> datetime:
    """Finish every run of the batch (new runs are created here unless they were written before the push)."""
    finished = timezone.now()
    for outcome in batch.outcomes.values():
        run = outcome.run
        run.finished_at = finished
        run.duration_ms = max(0, int((finished - run.started_at).total_seconds() * 1000))
    created: set[int] = set()
    if batch.new_runs and not runs_written:
        ProvisioningRun.objects.bulk_create(batch.new_runs)
        created = {id(run) for run in batch.new_runs}
    bulk_write(ProvisioningRun, [o.run for o in batch.outcomes.values() if id(o.run) not in created], _RUN_FIELDS)
    return finished


def _settle(batch: _Batch, covered: dict[int, int], *, finished: datetime) -> None:
    """Mark failed customers for the health check; a successful run supersedes the queued runs it covered."""
    outcomes = batch.outcomes
    health_marks_record((cid for cid, o in outcomes.items() if o.error is not None), reason="provisioning.failed")
    succeeded = [cid for cid, o in outcomes.items() if o.error is None]
    for customer_id in succeeded:
        last = covered.get(customer_id)
        if last is not None:
            ProvisioningRun.objects.filter(customer_id=customer_id, outcome=RunOutcome.QUEUED, id__lte=last).exclude(
                pk=outcomes[customer_id].run.pk
            ).update(outcome=RunOutcome.SUPERSEDED, finished_at=finished)
    ProvisioningState.objects.filter(customer_id__in=succeeded).update(last_success_at=finished)
