"""Reading the customer data version (subscriptions/models/data_changes.py, issue 18), and handing the version a
page read to the code that computes it (billing's caches of global inputs key on it too).

A version has two parts, the customer's own and the global one (catalog and tax rates, customer 0), each the newest
change row's id and the number of rows. Both numbers, because on PostgreSQL ids are handed out when a transaction
inserts, not when it commits: a transaction holding a lower id can commit after a higher one, which leaves the
maximum alone but raises the count. The prune (`subscriptions.services.data_changes`) replaces what it deletes by a
fresh row, so no (max, count) pair ever comes back. One index range (customer_data_change_seek), plain SQL: it runs
on every cached page view, before anything else.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import connection
from django.db.models.expressions import RawSQL

from subscriptions.models import GLOBAL_CUSTOMER_ID

_SQL = (
    "SELECT customer_id, MAX(id), COUNT(*) FROM subscriptions_customerdatachange "
    "WHERE customer_id IN (%s, %s) GROUP BY customer_id"
)


@dataclass(frozen=True)
class DataVersion:
    customer: str  # the customer's own rows
    catalog: str  # the global rows: catalog and tax rates

    def __str__(self) -> str:
        return f"{self.customer}/{self.catalog}"


def customer_data_version(*, customer_id: int) -> DataVersion:
    """What changes whenever a committed write changes anything a page of this customer shows. Read it before the
    data it guards: a write committed in between then only makes the data newer than the version."""
    with connection.cursor() as cursor:
        cursor.execute(_SQL, [GLOBAL_CUSTOMER_ID, customer_id])
        parts = {row[0]: f"{row[1]}.{row[2]}" for row in cursor.fetchall()}
    return DataVersion(customer=parts.get(customer_id, "0.0"), catalog=parts.get(GLOBAL_CUSTOMER_ID, "0.0"))


def _parsed(value: str | None) -> DataVersion:
    customer, _, catalog = (value or "0.0/0.0").partition("/")
    return DataVersion(customer=customer, catalog=catalog)


# The same version as a correlated subquery of a row that has the customer's id in `customer_column`, so that the
# query every customer page runs anyway (the signed-in user's memberships, portal/permissions.py) carries it: no
# query of its own, and still read before any of the page's data.
_SUBQUERY = (
    "(SELECT COALESCE(MAX(CASE WHEN d.customer_id <> 0 THEN d.id END), 0) || '.' || "
    "COUNT(CASE WHEN d.customer_id <> 0 THEN 1 END) || '/' || "
    "COALESCE(MAX(CASE WHEN d.customer_id = 0 THEN d.id END), 0) || '.' || "
    "COUNT(CASE WHEN d.customer_id = 0 THEN 1 END) "
    "FROM subscriptions_customerdatachange d WHERE d.customer_id IN (0, {customer_column}))"
)


def data_version_annotation(*, customer_column: str) -> RawSQL:
    """Annotate a queryset with the version of the customer in `customer_column` ("table"."column"); read the
    annotated value with `data_version_of`."""
    return RawSQL(_SUBQUERY.format(customer_column=customer_column), [])  # noqa: S611 — a column name of our code


def data_version_of(annotated: str | None) -> DataVersion:
    return _parsed(annotated)


_in_use: ContextVar[DataVersion | None] = ContextVar("customer_data_version_in_use", default=None)


@contextmanager
def data_version_in_use(version: DataVersion) -> Iterator[None]:
    """While a page computes what it caches under `version`, caches inside that computation (billing's estimates,
    SKUs and rates) key on it too, so they can be no older than the page (their own tokens are renewed by saves and
    deletes only, not by a queryset update or raw SQL)."""
    token = _in_use.set(version)
    try:
        yield
    finally:
        _in_use.reset(token)


def data_version_now() -> DataVersion | None:
    """The version of `data_version_in_use`, or None outside one (the page cache is off, a task, the admin)."""
    return _in_use.get()
