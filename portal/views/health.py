"""/healthz: is this instance able to serve? Reports database and broker reachability as JSON.

200 with status "ok" when both answer, 503 with status "degraded" when either does not, so a load balancer or
uptime check can act on the status code alone and a human can read why. Unauthenticated and cheap: one `SELECT 1`
and one broker connection attempt with a short timeout.
"""

from __future__ import annotations

import logging
import re

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_SECONDS = 2.0
_CREDENTIALS = re.compile(r"(//[^:/@\s]*):[^@\s]*@")


def _describe(exc: Exception) -> str:
    # The page is public: say what kind of failure it is, never echo a password that an error message embeds.
    message = " ".join(str(exc).split())[:200]
    message = _CREDENTIALS.sub(r"\1:***@", message)
    return f"error: {type(exc).__name__}: {message}" if message else f"error: {type(exc).__name__}"


def check_database() -> str:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("healthz: database unreachable", exc_info=True)
        return _describe(exc)
    return "ok"


def _declare_default_queue() -> None:
    with Connection(
        settings.CELERY_BROKER_URL,
        connect_timeout=BROKER_TIMEOUT_SECONDS,
        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    ) as connection:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0.2, interval_max=0.2, timeout=BROKER_TIMEOUT_SECONDS
        )
        # Some transports (kombu's SQLAlchemy one) connect lazily, so ensure_connection() alone proves nothing:
        # make one real round trip. Declaring Celery's default queue is what every worker does anyway.
        connection.default_channel.queue_declare(queue=getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery"))


def check_broker() -> str:
    try:
        try:
            _declare_default_queue()
        except SqlIntegrityError:
            # The embedded broker's first declaration of a queue is a look-up then an insert, serialised only within
            # one process: when another process (a second web worker, the Celery worker) inserts the same queue in
            # between, the insert fails on the unique name. The broker answered and the queue exists now, so declare
            # once more on a fresh connection (the failed one's session is unusable).
            _declare_default_queue()
    except Exception as exc:
        logger.warning("healthz: broker unreachable", exc_info=True)
        return _describe(exc)
    return "ok"


@never_cache
@require_GET
def healthz(request):
    checks = {"database": check_database(), "broker": check_broker()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({**checks, "status": "ok" if healthy else "degraded"}, status=200 if healthy else 503)
