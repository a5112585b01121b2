"""Customer pages' computed data, cached under the customer's data version (issue 18): never stale.

The version (`subscriptions.data_versions`) is maintained by the database: triggers on every table
a customer page reads append a row in the same transaction as the write, whatever wrote it (a service, a Celery
task, a set-based billing run's `bulk_update()`, the admin, raw SQL; `subscriptions/triggers.py`). A page

1. has passed `portal.permissions.customer_view` (membership and policy, never cached: the cache cannot widen access);
2. reads the version **first**, before any data, so a write committed meanwhile can only make what it caches newer
   than its key, never older;
3. looks up its data under a key made of the page, the customer, that version, the user and their role, the
   language and time zone, today's date (UTC, the date every page's date logic uses) and the page's own arguments
   (filters, page number, object id);
4. on a miss computes the data — plain picklable values and model instances, no querysets, no CSRF token, nothing
   of another user — and stores it; the template renders per request either way.

Data that goes out of date with the clock alone, at a finer time than the date (an invitation expiring at 14:05),
says until when it holds (`valid_until`); a page computes what depends on the exact time (a trial's days left) per
request from the cached facts instead.

The version comes with the membership query `customer_view` runs anyway (a correlated subquery over one index
range), so the cache adds no query: a miss costs the page's own queries plus pickling what it stores, a hit the
session, the user, the membership query and one cache read.
"""

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone, translation

from subscriptions import clock
from subscriptions.data_versions import customer_data_version, data_version_in_use, data_version_of

# Bump when what a page caches changes shape (a deploy must not hand a new template an old pickle).
KEY_VERSION = 1


def page_key(request, page: str, parts: tuple = (), *, version) -> str:
    membership = request.membership
    raw = repr(
        (
            KEY_VERSION,
            page,
            membership.customer_id,
            str(version),
            request.user.pk,
            membership.role,
            translation.get_language(),
            timezone.get_current_timezone_name(),
            clock.today().isoformat(),
            parts,
        )
    )
    return f"page:{page}:{membership.customer_id}:{hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()}"


def page_cache_on() -> bool:
    """The setting PAGE_CACHE (on unless turned off; the test settings turn it off, tests turn it on)."""
    return settings.PAGE_CACHE


def _version(membership):
    """The customer's data version as the membership query of `customer_view` read it (before any of the page's
    data), else read now (a membership loaded some other way)."""
    if "data_version" in membership.__dict__:
        return data_version_of(membership.data_version)
    return customer_data_version(customer_id=membership.customer_id)


def page_data(
    request,
    page: str,
    compute: Callable[[], Any],
    *,
    parts: tuple = (),
    valid_until: Callable[[Any], datetime | None] | None = None,
) -> Any:
    """The page's data for this request: cached under the customer's data version, or `compute()`d and cached.

    `parts` are the page's own arguments (hashable, e.g. the page number and the filters). `valid_until(data)`, when
    given, says until when data computed now holds by the clock alone (None: as long as the version). With the
    setting PAGE_CACHE off, every request computes (and reads no version)."""
    if not page_cache_on():
        return compute()
    version = _version(request.membership)
    key = page_key(request, page, parts, version=version)
    hit = cache.get(key)
    if hit is not None:
        data, until = hit
        if until is None or timezone.now() < until:
            return data
    with data_version_in_use(version):
        data = compute()
    until = valid_until(data) if valid_until is not None else None
    cache.set(key, (data, until), timeout=settings.PAGE_CACHE_SECONDS)
    return data


def evaluated_page(page):
    """A paginator's page with its rows read and its queryset dropped, so that it can be cached (its count is)."""
    paginator = page.paginator
    paginator.count  # noqa: B018 — read now (a cached_property), before the rows it counts go
    page.object_list = list(page.object_list)
    paginator.object_list = []
    return page
