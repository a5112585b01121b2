"""Query shapes built once per process (issue 18; in subscriptions/ since issue 19 so that every layer can use it).

Building a heavyweight queryset — annotations with correlated subqueries, `Prefetch` trees — costs several
milliseconds of CPU per request before any SQL is compiled: every `annotate()` resolves its expressions against the
model. A read path whose *shape* never changes can build it once and hand out clones: `QuerySet.all()` and every
`filter()` copy the query, so the shared template is never evaluated and holds no rows.

Only for shapes that depend on nothing but the code and the (hashable) arguments that pick a variant, e.g. a role
flag: no `timezone.now()`, no setting, no per-request value inside the template. Narrow or extend the clone instead:
`shape(...).filter(customer=...)`, `.annotate(<what depends on the request>)`.

A shared `Prefetch` is what Django's module-level prefetch objects are too: evaluating a clone filters a copy of its
queryset; the one thing Django writes on the shared queryset is a router hint (the last instance), and Continuum has
no database routers.
"""

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from django.db.models import QuerySet

Q = TypeVar("Q", bound=QuerySet)

# Variants kept per shape; an argument that moves on (today's date) evicts the oldest.
MAX_VARIANTS = 16


def prebuilt(build: Callable[..., Q]) -> Callable[..., Q]:
    """Decorate a function returning a QuerySet: it runs once per distinct arguments; each call returns a clone."""
    built: dict[tuple, Q] = {}

    @wraps(build)
    def shape(*args) -> Q:
        template = built.get(args)
        if template is None:
            # Two threads racing here both build the same shape; either template serves.
            template = built.setdefault(args, build(*args))
            while len(built) > MAX_VARIANTS:
                built.pop(next(iter(built)), None)
        return template.all()

    shape.rebuild = built.clear  # for a test that needs a fresh build
    return shape
