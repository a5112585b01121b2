"""Changes a customer makes to a subscription: preview, then apply exactly what the preview showed.

Every change has a `*_preview(...)` returning a `ChangePreview` (no writes) and a `*_apply(...)` that:
- locks the subscription row (`select_for_update`), so two simultaneous changes queue instead of losing one another;
- returns the first `SubscriptionChange` unchanged when the same idempotency key is applied again;
- refuses with `StalePreview` when the subscription's version differs from the preview's (or, if the caller passes
  `expected_amount_due_minor`, when the amount due now differs — e.g. the day rolled over);
- recomputes the preview under the lock and writes it as `SubscriptionChange.result` (amounts in minor units) —
  billing invoices changes from those rows;
- bumps `Subscription.version`, writes the seat ledger / scheduled change, an audit event, and enqueues an
  entitlements reconcile after commit.

Rules (docs/billing-rules.md, "Proration"): seat increases, upgrades and add-ons take effect immediately and are
prorated; seat decreases, downgrades and add-on removals take effect at the period end with no refund, unless the
package's `downgrade_timing` is "immediate" (then they apply now with a prorated credit). Nothing is charged while
trialing. Bad input raises a `SubscriptionError` subclass and writes nothing.

Where things are (one use case per module; import the public API from this package, the modules are its inside):
- `kinds.py`: THE registry of change kinds (which preview/apply pair and which parameters);
- `seats.py`, `package.py`, `addons.py`, `cancellation.py`: one use case each — its plan, `*_preview`, `*_apply`;
  `package_move.py`: a decided package move and how it is written (scheduled, or made now);
- `apply.py`: the apply engine they share (lock, idempotency, version check, write, audit, reconcile);
- `plan.py`: `ChangePreview`, `_Plan` and the building blocks of a plan; `catalog.py`: what a change reads from the
  catalog; `loading.py`: what it reads about the subscription, loaded once.
The underscore helpers are shared between these modules only (import-linter holds their layers); nothing outside
the package imports them.
"""

from subscriptions.services.changes.addons import (
    subscription_addon_add_apply,
    subscription_addon_add_preview,
    subscription_addon_remove_apply,
    subscription_addon_remove_preview,
)
from subscriptions.services.changes.apply import ApplyRequest, change_applied_now
from subscriptions.services.changes.cancellation import (
    MAX_REASON_LENGTH,
    subscription_cancel_apply,
    subscription_cancel_preview,
    subscription_reactivate_apply,
    subscription_reactivate_preview,
)
from subscriptions.services.changes.loading import change_package_ids, change_skus_remember, subscriptions_for_change
from subscriptions.services.changes.package import (
    subscription_change_package_apply,
    subscription_change_package_preview,
)
from subscriptions.services.changes.plan import ChangePreview, PreviewLine
from subscriptions.services.changes.seats import (
    subscription_change_seats_apply,
    subscription_change_seats_preview,
)

__all__ = [
    "MAX_REASON_LENGTH",
    "ApplyRequest",
    "ChangePreview",
    "PreviewLine",
    "subscription_addon_add_apply",
    "subscription_addon_add_preview",
    "subscription_addon_remove_apply",
    "subscription_addon_remove_preview",
    "subscription_cancel_apply",
    "subscription_cancel_preview",
    "subscription_change_package_apply",
    "subscription_change_package_preview",
    "subscription_change_seats_apply",
    "subscription_change_seats_preview",
    "subscription_reactivate_apply",
    "subscription_reactivate_preview",
    "change_applied_now",
    "change_package_ids",
    "change_skus_remember",
    "subscriptions_for_change",
]
