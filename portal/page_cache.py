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
says until when it holds (`valid_until`): a trial's days left until the time of day the trial ends, a pending
invitation until it expires.

5. on a GET, a template may also keep the HTML it renders from that data (`{% page_fragment %}` around the page's
   content block, `portal_tags`): under the same key and the same `valid_until`, tied to the one computation of
   the data it was rendered from (data computed anew after its `valid_until` is rendered anew), and a digest of
   every template file (a deploy that changes a template renders anew). The CSRF token is rendered as a
   placeholder and each request's own token is put in on the way out; the parts of a page that are per request
   (the navigation, the session's messages, the dashboard's survey prompt) stay outside the fragment. A POST
   re-rendering a page with its form errors never uses it.

The version comes with the membership query `customer_view` runs anyway (a correlated subquery over one index
range), so the cache adds no query: a miss costs the page's own queries plus pickling what it stores, a hit the
session, the user, the membership query and one cache read.
"""

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import cache as once
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone, translation

from subscriptions import clock
from subscriptions.data_versions import customer_data_version, data_version_in_use, data_version_of

# Bump when what a page caches changes shape (a deploy must not hand a new template an old pickle).
KEY_VERSION = 2


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
        data, until, computation = hit
        if until is None or timezone.now() < until:
            _fragment_allowed(request, key, until, computation)
            return data
    with data_version_in_use(version):
        data = compute()
    until = valid_until(data) if valid_until is not None else None
    # Which computation this is: a fragment is kept under it, so HTML rendered from data that has run out
    # (`valid_until`) is never served beside the data computed anew under the same key.
    computation = uuid.uuid4().hex
    cache.set(key, (data, until, computation), timeout=settings.PAGE_CACHE_SECONDS)
    _fragment_allowed(request, key, until, computation)
    return data


# --- rendered fragments (`{% page_fragment %}`) ---------------------------------------------------------------------

CSRF_PLACEHOLDER = "csrf-token-of-this-request-0f3a9c"  # letters, digits and dashes only: nothing escapes it


def _fragment_allowed(request, key: str, until: datetime | None, computation: str) -> None:
    # Only a GET renders the page from nothing but its cached data and the key's parts (a POST adds its form).
    if request.method == "GET":
        request.page_fragment = (f"{key}:{computation}", until)


@once
def templates_digest() -> str:
    """A digest of every template file of the project and its apps (read once per process)."""
    digest = hashlib.sha1(usedforsecurity=False)
    roots = [Path(d) for engine in settings.TEMPLATES for d in engine.get("DIRS", ())]
    roots += [Path(settings.BASE_DIR) / app / "templates" for app in ("portal", "billing", "subscriptions")]
    for root in roots:
        for path in sorted(root.rglob("*.html")) if root.is_dir() else ():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def fragment_html(request, name: str, csrf_token: str | None, render: Callable[[str | None], str]) -> str:
    """The HTML of fragment `name` of this request's page: cached beside the page's data (the same key and
    validity, rendered from that very computation of it), or `render(token)` now. The cached copy is rendered with
    the CSRF placeholder; this request's token replaces it. Rendered afresh when the page did not come through
    `page_data` on a GET."""
    fragment = getattr(request, "page_fragment", None)
    if fragment is None or not csrf_token:
        return render(csrf_token)
    key, until = fragment
    html_key = f"{key}:html:{templates_digest()}:{name}"
    html = cache.get(html_key)
    if html is None or (until is not None and timezone.now() >= until):
        html = render(CSRF_PLACEHOLDER)
        cache.set(html_key, html, timeout=settings.PAGE_CACHE_SECONDS)
    return html.replace(CSRF_PLACEHOLDER, str(csrf_token))


def evaluated_page(page):
    """A paginator's page with its rows read and its queryset dropped, so that it can be cached (its count is)."""
    paginator = page.paginator
    paginator.count  # noqa: B018 — read now (a cached_property), before the rows it counts go
    page.object_list = list(page.object_list)
    paginator.object_list = []
    return page
