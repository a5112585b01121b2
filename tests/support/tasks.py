"""Tasks the harness's own tests send to a real worker (the worker loads this module with --include).

They write a `Group` row because every installation has that table; the app's tests use the app's real tasks.
"""

from __future__ import annotations

import time
from pathlib import Path

from django.contrib.auth.models import Group

from portal.celery import app


@app.task(name="harness.record_marker")
def record_marker(label: str) -> None:
    Group.objects.get_or_create(name=label)


@app.task(name="harness.wait_for_file_then_record")
def wait_for_file_then_record(label: str, release_file: str, timeout: float = 60.0) -> None:
    """Logs that it started, blocks until `release_file` exists, then records `label` (killable mid-task)."""
    print(f"harness task {label} started", flush=True)
    deadline = time.monotonic() + timeout
    while not Path(release_file).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release_file} never appeared")
        time.sleep(0.05)
    Group.objects.get_or_create(name=label)
