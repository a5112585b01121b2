"""Transient failures: the errors a later attempt can succeed past, and how background work retries them.

A database lock (SQLite's "database is locked", PostgreSQL's deadlock or serialization failure), a dropped database
connection (a restart, `pg_terminate_backend`) or a broker blip says nothing about the work itself. Met in a task, it
is retried with exponential backoff and jitter, never final on the first attempt (docs/operations.md, "Transient
errors"). Every Continuum task gets this from `TransientRetryTask`, the Celery app's task class (portal/celery.py);
a task's own `autoretry_for`/`retry_kwargs` still win where it sets them.
"""

from __future__ import annotations

import random

import celery
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError

# Broker and connection errors, imported where their library is installed (kombu always is: Celery needs it).
_transient: list[type[BaseException]] = [DjangoOperationalError, DjangoInterfaceError, ConnectionError, TimeoutError]
try:
    from kombu.exceptions import OperationalError as KombuOperationalError

    _transient.append(KombuOperationalError)
except ImportError:  # pragma: no cover - kombu ships with Celery
    pass
try:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    _transient.extend([RedisConnectionError, RedisTimeoutError])
except ImportError:  # pragma: no cover - only with the Redis broker
    pass
try:
    from sqlalchemy.exc import OperationalError as SqlAlchemyOperationalError

    _transient.append(SqlAlchemyOperationalError)  # the embedded broker's "database is locked"
except ImportError:  # pragma: no cover - only with the SQLAlchemy broker
    pass

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = tuple(_transient)

# An OperationalError that no retry can fix: the schema is not there (a missing migration) or the SQL is wrong.
_PERMANENT_MARKERS = ("no such table", "no such column", "syntax error", "does not exist")

# Background work: retries 1 s, 2 s, 4 s … capped at 5 minutes, each with jitter, then the task fails visibly.
TRANSIENT_MAX_RETRIES = 8
TRANSIENT_BACKOFF_BASE_SECONDS = 1.0
TRANSIENT_BACKOFF_MAX_SECONDS = 300.0


def is_transient(exc: BaseException) -> bool:
    """True when `exc` (or what it was raised from) is a lock, a lost connection or a broker blip."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TRANSIENT_ERRORS):
            message = str(current).lower()
            return not any(marker in message for marker in _PERMANENT_MARKERS)
        current = current.__cause__ or current.__context__
    return False


def backoff_seconds(
    retries: int,
    *,
    base: float = TRANSIENT_BACKOFF_BASE_SECONDS,
    cap: float = TRANSIENT_BACKOFF_MAX_SECONDS,
) -> float:
    """Seconds before retry number `retries + 1`: exponential, capped, with "equal jitter" so that many tasks failing
    together (one lock, one restart) do not come back in lockstep."""
    ceiling = min(cap, base * (2 ** max(0, retries)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class TransientRetryTask(celery.Task):
    """The base of every task: a transient error is retried with backoff instead of failing the task."""

    abstract = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = TRANSIENT_BACKOFF_BASE_SECONDS
    retry_backoff_max = TRANSIENT_BACKOFF_MAX_SECONDS
    retry_jitter = True
    retry_kwargs = {"max_retries": TRANSIENT_MAX_RETRIES}
