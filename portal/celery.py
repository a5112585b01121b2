"""The Celery application.

Broker: an embedded SQLite-backed broker (kombu's SQLAlchemy transport) by default, so a real worker runs with no
server; Redis when CELERY_BROKER_URL says so. See docs/decisions.md.
"""

import os

from celery import Celery

from portal import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
broker.register()

app = Celery("continuum")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
