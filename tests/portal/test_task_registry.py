"""Services queue background work by task NAME (subscriptions/dispatch.py), so a process that is not a Celery worker
(the web server, a management command such as seed_demo) must have every task registered after Django starts.

Found under `make run`: a seat change made in the portal or the API logged "no task registered as
'subscriptions.entitlements_reconcile'", so the new seats were never switched on, and the demo's sign-ups stayed
"being switched on". The test suite itself imports every tasks module, so only a fresh interpreter shows it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
django.setup()
from celery import current_app
after_setup = sorted(n for n in current_app.tasks if not n.startswith("celery."))
current_app.loader.import_default_modules()  # what a worker does at start
in_a_worker = sorted(n for n in current_app.tasks if not n.startswith("celery."))
print(json.dumps({"after_setup": after_setup, "in_a_worker": in_a_worker}))
"""


def _registered_in_a_fresh_process() -> dict[str, list[str]]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings_test")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_process_that_is_not_a_worker_knows_every_task_a_worker_knows():
    registered = _registered_in_a_fresh_process()
    # given a fresh interpreter that only started Django (as runserver, gunicorn and every command do)
    after_setup, in_a_worker = set(registered["after_setup"]), set(registered["in_a_worker"])
    # then every task a worker would run can be queued by name from it
    assert in_a_worker - after_setup == set()
    # and that includes the hand-offs of a change and of the health marks, and everything the beat schedule sends
    assert {"subscriptions.entitlements_reconcile", "portal.customer_health_recompute_marked"} <= after_setup
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled - after_setup == set()
