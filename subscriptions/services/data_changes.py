"""Prune the customer data-version rows (subscriptions/models/data_changes.py): keep the table small, so that
reading a customer's version stays one short index range.

For every customer with more than one row, the rows this transaction sees are deleted and **one fresh row** is
written in their place. The fresh row matters: a version is (newest id, count), and on PostgreSQL a transaction that
took a lower id can still commit after the prune; had the prune left the newest row and fewer rows behind, such late
commits could bring the count back to a pair some earlier, different state had, and a cached page under it would be
served stale. A fresh id is higher than every id committed before it, so the pair after a prune is new (at the price
of one cache miss per pruned customer per prune).
"""

from django.db import transaction
from django.db.models import Count

from subscriptions.models import CustomerDataChange

CHUNK = 500


def customer_data_changes_prune() -> dict:
    """Run by the periodic task `subscriptions.customer_data_changes_prune`; returns what it did."""
    customers = list(
        CustomerDataChange.objects.values("customer_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .values_list("customer_id", flat=True)
        .order_by("customer_id")
    )
    deleted = 0
    for start in range(0, len(customers), CHUNK):
        chunk = customers[start : start + CHUNK]
        with transaction.atomic():
            deleted += CustomerDataChange.objects.filter(customer_id__in=chunk).delete()[0]
            CustomerDataChange.objects.bulk_create([CustomerDataChange(customer_id=pk) for pk in chunk])
    return {"customers": len(customers), "deleted": deleted, "kept": len(customers)}
