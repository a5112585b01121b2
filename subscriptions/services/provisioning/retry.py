"""Support asks for another reconcile (the admin's "retry provisioning")."""

from django.db import transaction

from subscriptions.models import Customer, User
from subscriptions.models.provisioning import Entitlement, EntitlementState
from subscriptions.services.audit import audit_record
from subscriptions.services.provisioning.enqueue import entitlements_reconcile_enqueue


def entitlements_retry(*, customer_id: int, actor: User | None, reason: str = "") -> None:
    """Support asks for another reconcile (e.g. after fixing the receiver): audited, then queued after commit."""
    customer = Customer.objects.get(pk=customer_id)
    with transaction.atomic():
        failed = list(
            Entitlement.objects.filter(customer=customer, state=EntitlementState.FAILED).values_list(
                "feature_key", flat=True
            )
        )
        audit_record(
            customer=customer,
            actor=actor,
            action="entitlements.retry_requested",
            obj=customer,
            summary="Provisioning retry requested",
            before={"failed": failed},
            reason=reason,
        )
        entitlements_reconcile_enqueue(customer_id=customer.pk, trigger=f"retry by {actor or 'system'}")
