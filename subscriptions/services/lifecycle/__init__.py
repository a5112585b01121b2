"""Subscription status changes and renewal.

Statuses: trialing → active at trial end; active ⇄ past_due (dunning); any live status → canceled (immediately, or
at the period end when `cancel_at_period_end` is set); canceled → ended when the paid period is over. "canceled"
means "not renewing, no access"; "ended" is final.

Where things are (one use case per module; import the public API from this package, the modules are its inside):
- `transition.py`: THE status table check (`subscription_transition`): lock, check, timestamps, audit, reconcile;
- `past_due.py`: dunning's past due / restore; `cancel.py`: cancel immediately;
- `renewal.py`: THE renewal rules (the boundary walk, period boundaries on the billing anchor, the audit row),
  which both `renew.py` (one subscription) and `renew_batch.py` (the billing run's chunk) use;
- `scheduled.py`: scheduled changes applied (or canceled) at a boundary.
import-linter (contract lifecycle-layers) holds these layers.
"""

from subscriptions.models import LIVE_STATUSES
from subscriptions.services.lifecycle.cancel import subscription_cancel_now
from subscriptions.services.lifecycle.past_due import subscription_mark_past_due, subscription_restore
from subscriptions.services.lifecycle.renew import subscription_renew, subscriptions_due_for_renewal
from subscriptions.services.lifecycle.renew_batch import subscription_renew_batch
from subscriptions.services.lifecycle.renewal import MAX_PERIODS_PER_RENEWAL, RenewalResult, RenewedPeriod
from subscriptions.services.lifecycle.transition import subscription_transition

__all__ = [
    "LIVE_STATUSES",
    "MAX_PERIODS_PER_RENEWAL",
    "RenewalResult",
    "RenewedPeriod",
    "subscription_cancel_now",
    "subscription_mark_past_due",
    "subscription_renew",
    "subscription_renew_batch",
    "subscription_restore",
    "subscription_transition",
    "subscriptions_due_for_renewal",
]
