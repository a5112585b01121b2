"""The Celery application.

Broker: an embedded SQLite-backed broker (kombu's SQLAlchemy transport) by default, so a real worker runs with no
server; Redis when CELERY_BROKER_URL says so. See docs/decisions.md. Every task's base class is
subscriptions.transient.TransientRetryTask (docs/operations.md, "Transient errors").
"""

import os

from celery import Celery

from portal import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
broker.register()

# Every task retries transient errors (a database lock, a dropped connection, a broker blip) with backoff.
app = Celery("continuum", task_cls="subscriptions.transient:TransientRetryTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Connect the task signals in every worker process: task metrics, and the task id on every log line.
from portal import logging as _logging  # noqa: E402,F401
from portal import metrics  # noqa: E402,F401
