"""Row plumbing of a reconcile: the ProvisioningState rows it locks, and the bulk UPDATE it writes with."""

from datetime import datetime

from django.db import IntegrityError, connection, transaction

from subscriptions.models.provisioning import ProvisioningState


def ensure_states(customer_ids: list[int]) -> None:
    existing = set(ProvisioningState.objects.filter(customer_id__in=customer_ids).values_list("customer_id", flat=True))
    missing = [cid for cid in customer_ids if cid not in existing]
    if not missing:
        return
    try:
        with transaction.atomic():
            ProvisioningState.objects.bulk_create(
                [ProvisioningState(customer_id=cid) for cid in missing], ignore_conflicts=True
            )
    except IntegrityError:  # a customer deleted meanwhile; the reconcile below simply skips it
        for cid in missing:
            try:
                with transaction.atomic():
                    ProvisioningState.objects.get_or_create(customer_id=cid)
            except IntegrityError:
                continue


def lock_states(customer_ids: list[int], now: datetime) -> list[int]:
    """Lock the customers' ProvisioningState rows in primary-key order; returns the ids that exist."""
    # The UPDATE comes first: on SQLite it takes the write lock at once (no read-then-upgrade deadlock); on
    # PostgreSQL it row-locks like the SELECT ... FOR UPDATE that follows.
    ProvisioningState.objects.filter(customer_id__in=customer_ids).update(last_run_at=now)
    return list(
        ProvisioningState.objects.select_for_update()
        .filter(customer_id__in=customer_ids)
        .order_by("customer_id")
        .values_list("customer_id", flat=True)
    )


def bulk_write(model, objs: list, fields: list[str]) -> None:
    """UPDATE each object's `fields` by primary key, as one executemany.

    Django's bulk_update builds a CASE expression per field in Python, which measured 4 s for 500 runs on the drift
    check's path; a parameterised UPDATE per row costs a fraction of a millisecond.
    """
    if not objs:
        return
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(column.column)} = %s" for column in columns)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    params = [
        [column.get_db_prep_save(getattr(obj, column.attname), connection) for column in columns] + [obj.pk]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
