"""The per-customer data version (issue 18): an append-only row per committed write that changes what a customer's
pages show, written by the database itself (triggers created in migrations, `subscriptions/triggers.py`).

Every write path — services, Celery tasks, set-based billing runs with `bulk_update()`/`update()`, the admin, raw
SQL — writes through the same tables, so every one of them adds a row in the same transaction; nothing in Python
has to remember to. A reader takes the version (`subscriptions.selectors.customer_data_version`) *before* it reads
the data it caches, so a write committed in between can only make the cached data newer than its key.

`customer_id` 0 is the global row of the catalog (packages, prices, SKUs) and the tax rates: every customer's
version includes it. It is a plain integer, not a foreign key: no lock on the customer row, no check per insert,
and the rows of a deleted customer do no harm (the prune removes them).
"""

from django.db import models

GLOBAL_CUSTOMER_ID = 0


class CustomerDataChange(models.Model):
    id = models.BigAutoField(primary_key=True)
    customer_id = models.BigIntegerField(help_text="The customer whose data changed; 0 for the catalog and tax rates.")

    class Meta:
        indexes = [models.Index(fields=["customer_id", "id"], name="customer_data_change_seek")]

    def __str__(self) -> str:
        return f"Data of customer {self.customer_id} changed (#{self.id})"
