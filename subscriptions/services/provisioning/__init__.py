"""Provisioning: reconcile the entitlements customers bought (desired) with what is switched on (applied).

Where things are (one use case per module; import the public API from this package, the modules are its inside):
- `reconcile.py`: reconcile one customer (the task's path) or many in one transaction (the drift check's);
- `drift.py`: which customers drifted, and the periodic drift check; `retry.py`: support asks for another run;
- `enqueue.py`: queue a reconcile after commit — what every service changing entitlements calls;
- `engine.py`: the body of a run as named steps (plan, push, write, settle); `notify.py`: support's e-mail;
- `desired.py`: what a customer is entitled to; `diff.py`: desired vs applied (pure); `state.py`: the entitlement
  state machine; `storage.py`: the state-row locks and the bulk UPDATE.
import-linter (contract provisioning-layers) holds these layers; docs/provisioning.md explains the model.
"""

from subscriptions.services.provisioning.desired import (
    SEAT_FEATURE_PREFIX,
    DesiredEntitlement,
    EntitlementKey,
    entitlements_desired,
)
from subscriptions.services.provisioning.diff import AppliedEntitlement, EntitlementChange, entitlements_diff
from subscriptions.services.provisioning.drift import DriftCheckResult, entitlements_drift_check, entitlements_drifted
from subscriptions.services.provisioning.enqueue import entitlements_reconcile_enqueue
from subscriptions.services.provisioning.reconcile import entitlements_reconcile, entitlements_reconcile_many
from subscriptions.services.provisioning.retry import entitlements_retry
from subscriptions.services.provisioning.state import entitlement_transition

_transition = entitlement_transition  # the name the transition-table tests import

__all__ = [
    "SEAT_FEATURE_PREFIX",
    "AppliedEntitlement",
    "DesiredEntitlement",
    "DriftCheckResult",
    "EntitlementChange",
    "EntitlementKey",
    "entitlement_transition",
    "entitlements_desired",
    "entitlements_diff",
    "entitlements_drift_check",
    "entitlements_drifted",
    "entitlements_reconcile",
    "entitlements_reconcile_enqueue",
    "entitlements_reconcile_many",
    "entitlements_retry",
]
