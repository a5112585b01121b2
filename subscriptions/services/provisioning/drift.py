"""The drift check: find customers whose applied entitlements differ from desired, and reconcile them."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from subscriptions.models import Customer
from subscriptions.models.provisioning import Entitlement, EntitlementState, ProvisioningRun, RunOutcome
from subscriptions.provisioners import Provisioner, provisioner_get
from subscriptions.services.provisioning.desired import desired_for_customers
from subscriptions.services.provisioning.diff import AppliedEntitlement, entitlements_diff
from subscriptions.services.provisioning.enqueue import entitlements_reconcile_enqueue
from subscriptions.services.provisioning.reconcile import entitlements_reconcile_many


def entitlements_drifted(
    customer_ids: list[int], *, now: datetime | None = None, stale_after_seconds: int = 60
) -> list[int]:
    """Which of `customer_ids` need a reconcile: applied differs from desired, a row is not settled, or a queued run
    is older than `stale_after_seconds` (its message was lost). Constant number of queries for the whole list."""
    now = now or timezone.now()
    desired_by_customer = desired_for_customers(customer_ids, now=now)
    applied: dict[int, dict] = defaultdict(dict)
    unsettled: set[int] = set()
    for customer_id, key, user_id, kind, value, state in Entitlement.objects.filter(
        customer_id__in=customer_ids
    ).values_list("customer_id", "feature_key", "user_id", "value_kind", "applied_value", "state"):
        if value is not None:
            applied[customer_id][(key, user_id)] = AppliedEntitlement(kind, value)
        if state not in (EntitlementState.ACTIVE, EntitlementState.REVOKED):
            unsettled.add(customer_id)
    stale = set(
        ProvisioningRun.objects.filter(
            customer_id__in=customer_ids,
            outcome=RunOutcome.QUEUED,
            queued_at__lt=now - timedelta(seconds=stale_after_seconds),
        ).values_list("customer_id", flat=True)
    )
    return [
        cid
        for cid in customer_ids
        if cid in unsettled or cid in stale or entitlements_diff(desired_by_customer[cid], applied[cid])
    ]


@dataclass
class DriftCheckResult:
    customers_checked: int = 0
    customers_drifted: int = 0
    customers_reconciled: int = 0
    customers_queued: int = 0


def entitlements_drift_check(*, chunk_size: int = 500, provisioner: Provisioner | None = None) -> DriftCheckResult:
    """Find every customer whose applied entitlements differ from desired and reconcile them, chunk by chunk.

    With the built-in backend drifted customers are reconciled inline, a chunk per transaction; with a remote
    backend each is queued as a task (which owns retries and backoff) so one slow receiver cannot stall the check.
    """
    provisioner = provisioner or provisioner_get()
    result = DriftCheckResult()
    last_id = 0
    while True:
        ids = list(Customer.objects.filter(id__gt=last_id).order_by("id").values_list("id", flat=True)[:chunk_size])
        if not ids:
            break
        last_id = ids[-1]
        result.customers_checked += len(ids)
        drifted = entitlements_drifted(ids)
        result.customers_drifted += len(drifted)
        if not drifted:
            continue
        if provisioner.name == "builtin":
            entitlements_reconcile_many(customer_ids=drifted, trigger="drift check", provisioner=provisioner)
            result.customers_reconciled += len(drifted)
        else:
            with transaction.atomic():
                for customer_id in drifted:
                    entitlements_reconcile_enqueue(customer_id=customer_id, trigger="drift check")
            result.customers_queued += len(drifted)
    return result
