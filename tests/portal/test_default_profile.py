"""The zero-setup default (issue 17): SQLite shared by several processes never fails a request, and Ctrl-C of
`make run` leaves no process behind.

Both tests run real processes against a real SQLite *file* (the test database copied with SQLite's backup API), with
the default settings (portal.settings), as `make run` does. They are about the SQLite default and skip on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from portal.services.api_keys import access_token_create
from subscriptions.models import Subscription
from subscriptions.services.subscriptions import subscription_create
from tests.api.conftest import make_account
from tests.factories import priced_package
from tests.support.processes import free_port, stop_process_group, tail, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLIENT = Path(__file__).with_name("sqlite_contention_client.py")

pytestmark = pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="about the SQLite default"
)


def copy_test_database(target: Path) -> str:
    """The (committed) test database as a file; returns its DATABASE_URL."""
    connection.ensure_connection()
    with sqlite3.connect(target) as destination:
        connection.connection.backup(destination)
    return f"sqlite:///{target}"


def default_env(var_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "CELERY_BROKER_TRANSPORT_OPTIONS"}
    }
    env.update(
        {
            "CONTINUUM_VAR_DIR": str(var_dir),
            "DATABASE_URL": database_url,
            "PRIVATE_STORAGE_ROOT": str(var_dir / "private"),
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


@pytest.mark.django_db(transaction=True)
def test_sqlite_default_concurrent_seat_changes_never_fail(tmp_path):
    # given: a customer with a 10-seat subscription, in a database file three processes share
    account = make_account("Acme")
    subscription = subscription_create(
        customer=account.customer, package=priced_package(slug="team", name="Team"), interval="month", seats=10
    )
    _, token = access_token_create(user=account.owner)
    database_url = copy_test_database(tmp_path / "continuum.sqlite3")
    env = default_env(tmp_path, database_url, CELERY_TASK_ALWAYS_EAGER="1", LOG_LEVEL="WARNING")

    # when: each process changes the same subscription's seats and reads invoices as fast as it can
    rounds = 6
    processes = [
        subprocess.Popen(
            [sys.executable, str(CLIENT), token, str(account.customer.pk), str(subscription.pk), str(rounds)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results, logs = [], []
    for process in processes:
        try:
            out, err = process.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
        logs.append(err)

    # then: not one 5xx, not one "database is locked" anywhere in the logs
    statuses: dict[str, int] = {}
    for result in results:
        assert result["errors"] == [], result["errors"]
        for code, count in result["statuses"].items():
            statuses[code] = statuses.get(code, 0) + count
    assert not [code for code in statuses if code.startswith("5")], statuses
    assert "OperationalError" not in "".join(logs) and "database is locked" not in "".join(logs), "".join(logs)[-3000:]
    # every request was answered; a stale preview version is an honest 409 (a lost race), a seat count equal to the
    # current one a coded 422, neither an error of ours
    assert set(statuses) <= {"200", "201", "409", "422"}, statuses
    assert statuses.get("201", 0) >= 1
    # and the seat ledger agrees with the subscription: no change lost or half-written
    with sqlite3.connect(tmp_path / "continuum.sqlite3") as db:
        seats = db.execute("SELECT seats FROM subscriptions_subscription WHERE id = ?", [subscription.pk]).fetchone()[0]
        last = db.execute(
            "SELECT seats_to FROM subscriptions_seatledgerentry WHERE subscription_id = ? ORDER BY effective_at, id",
            [subscription.pk],
        ).fetchall()
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    assert last and last[-1][0] == seats
    assert Subscription.objects.filter(pk=subscription.pk).exists()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _started(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22 of /proc/<pid>/stat: start time, tells a reused pid apart


def _alive(pid: int, started: str | None = None) -> bool:
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":  # a zombie has already exited; it only waits for its parent to reap it
        return False
    return started is None or fields[19] == started


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("stop", "grace"),
    [
        # Ctrl-C: the terminal sends SIGINT to the foreground process group; honcho stops what it started and waits
        (signal.SIGINT, 0.0),
        # the terminal closes: SIGHUP kills honcho outright; what it started must follow it (scripts/die-with-parent)
        (signal.SIGHUP, 60.0),
    ],
    ids=["ctrl-c", "terminal-closed"],
)
def test_stopping_make_run_stops_web_worker_pool_and_beat(tmp_path, stop, grace):
    # given: the `make run` processes (the Procfile under honcho), started as a terminal would: one process group
    database_url = copy_test_database(tmp_path / "continuum.sqlite3")
    port = free_port()
    log_path = tmp_path / "honcho.log"
    env = default_env(tmp_path, database_url, DJANGO_DEBUG="1")
    with open(log_path, "wb") as log:
        honcho = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "honcho"), "start", "-f", "Procfile", "-p", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    processes: dict[int, str | None] = {}  # pid → start time
    try:

        def everything_up() -> bool:
            text = log_path.read_text(errors="replace")
            if "ready." not in text or "beat: Starting" not in text:
                return False
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/favicon.ico", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(everything_up, timeout=120, what=f"web, worker and beat to start:\n{tail(log_path)}", interval=0.5)
        processes = {pid: _started(pid) for pid in _descendants(honcho.pid)}
        commands = " ".join(Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ") for pid in processes)
        assert "runserver" in commands and " beat" in commands and " worker" in commands
        assert len(processes) >= 6, commands  # honcho's 3 helpers, web, beat, worker + its 2 pool processes

        # when
        os.killpg(honcho.pid, stop)
        honcho.wait(timeout=60)

        # then: nothing it started is still running, at once after Ctrl-C (honcho waited for them), within the
        # worker's warm shutdown after SIGHUP
        deadline = time.monotonic() + grace
        while [pid for pid, started in processes.items() if _alive(pid, started)] and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [pid for pid, started in processes.items() if _alive(pid, started)]
        assert survivors == [], f"still running after {stop.name}: {survivors}\n{tail(log_path)}"
    finally:
        stop_process_group(honcho, timeout=0)
        for pid, started in processes.items():  # each process has a session of its own: a failed test cleans up
            if _alive(pid, started):  # never a reused pid
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
