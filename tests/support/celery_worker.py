"""A real Celery worker process for integration tests, pointed at the test database and an isolated broker.

The worker runs `python -m celery -A portal worker` with the test settings (not eager), the *test* database (which is
why tests using it need `@pytest.mark.django_db(transaction=True)`: the worker is another process and only sees
committed rows) and a broker namespace of its own, so neither a developer's `make run` worker nor another test can
steal its tasks:

* Redis (CELERY_BROKER_URL=redis://…): a unique `global_keyprefix` transport option;
* the embedded SQLAlchemy broker (`sqla+sqlite:///…`): a fresh SQLite broker file.

Killing it with SIGKILL simulates a crashed machine. Whether the task it was running comes back depends on the broker:

* Redis keeps a delivered-but-unacknowledged message (we use acks_late) and hands it out again once its visibility
  timeout has passed; `restart()` starts the new worker with a short visibility timeout so it reclaims the message at
  start-up, as a real worker would after the (default one hour) timeout.
* kombu's SQLAlchemy transport hides a delivered message and only restores it on a clean shutdown, so after a
  SIGKILL of the whole worker the message is lost. Killing only the pool child (`kill(whole_group=False)`) is
  recovered on both brokers: the parent sees WorkerLostError and, with task_reject_on_worker_lost, requeues it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

from tests.support.processes import stop_process_group, tail, wait_until

READY = re.compile(r"\bready\.")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def database_url_for(settings_dict: dict) -> str:
    """A DATABASE_URL (as portal/settings.py parses it) for the database described by a Django settings dict."""
    engine = settings_dict["ENGINE"]
    name = str(settings_dict["NAME"])
    if engine.endswith("sqlite3"):
        if name == ":memory:" or "mode=memory" in name:
            raise RuntimeError(
                "the test database is an in-memory SQLite database, which a worker process cannot see; "
                "run with CONTINUUM_INTEGRATION=1 (portal/settings_test.py then puts it in a file under var/)"
            )
        return "sqlite:///" + str(Path(name).resolve())
    if engine.endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "", safe="")
        password = quote(settings_dict.get("PASSWORD") or "", safe="")
        credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{credentials}{host}:{port}/{quote(name, safe='')}"
    raise RuntimeError(f"no DATABASE_URL mapping for database engine {engine!r}")


def isolated_broker(broker_url: str, *, var_dir: Path, token: str) -> tuple[str, dict]:
    """(broker URL, extra transport options) giving this worker a broker namespace nobody else uses."""
    if broker_url.startswith(("redis://", "rediss://")):
        return broker_url, {"global_keyprefix": f"continuum-test-{token}:"}
    if broker_url.startswith("sqla+sqlite"):
        path = var_dir / f"test-broker-{token}.sqlite"
        return f"sqla+sqlite:///{path}", {}
    # Anything else (an AMQP server, say) is used as is; tests on it share the broker's default queue.
    return broker_url, {}


class CeleryWorkerProcess:
    """One Celery worker subprocess that can be started, killed (SIGKILL) and restarted."""

    def __init__(
        self,
        *,
        database_url: str,
        broker_url: str,
        transport_options: dict,
        log_dir: Path,
        settings_module: str = "portal.settings_test",
        concurrency: int = 1,
        pool: str = "prefork",
        include: tuple[str, ...] = ("tests.support.tasks",),
        extra_env: dict[str, str] | None = None,
        queues: tuple[str, ...] = (),
    ) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.transport_options = dict(transport_options)
        self.log_dir = log_dir
        self.settings_module = settings_module
        self.concurrency = concurrency
        self.pool = pool
        self.include = include
        self.extra_env = dict(extra_env or {})
        self.queues = queues  # empty: Celery's default queue only
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.starts = 0
        self._killed_at: float | None = None

    @property
    def uses_redis(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://"))

    @property
    def redelivers_after_kill(self) -> bool:
        """True when a SIGKILL of the whole worker gets its unacknowledged task redelivered (see module docstring)."""
        return self.uses_redis

    # --- lifecycle -------------------------------------------------------------------------------------------------
    def start(self, *, timeout: float = 60.0, transport_options: dict | None = None) -> CeleryWorkerProcess:
        assert self.process is None or self.process.poll() is not None, "worker already running"
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"celery-{self.name}-{self.starts}.log"
        options = {**self.transport_options, **(transport_options or {})}
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": self.settings_module,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "DATABASE_URL": self.database_url,
            "CELERY_BROKER_URL": self.broker_url,
            "CELERY_BROKER_TRANSPORT_OPTIONS": json.dumps(options),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--loglevel=INFO",
            f"--pool={self.pool}",
            f"--concurrency={self.concurrency}",
            f"--hostname={self.name}@%h",
            # No broadcast chatter: the embedded broker has no fanout, and tests want one worker doing one thing.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if self.include:
            command.append(f"--include={','.join(self.include)}")
        if self.queues:
            command.append(f"--queues={','.join(self.queues)}")
        with open(self.log_path, "wb") as log:
            # A session of its own, so kill() can take down the pool children with the parent.
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=PROJECT_ROOT
            )
        try:
            self.wait_for_log(READY, timeout=timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self, *, grace: float = 2.0) -> None:
        """Warm shutdown (SIGTERM: let the current task finish) for up to `grace` seconds, then SIGKILL the rest.

        Celery's prefork pool takes several seconds to wind down even when idle; tests do not wait for that.
        """
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        # Whatever is left (a slow main process, or pool children of one that was killed alone) goes now.
        stop_process_group(self.process, timeout=0)

    def kill(self, *, whole_group: bool = True) -> None:
        """SIGKILL the worker mid-whatever. whole_group=False kills only the prefork pool child(ren)."""
        assert self.process is not None and self.process.poll() is None, "worker is not running"
        if whole_group:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        else:
            children = _child_pids(self.process.pid)
            assert children, "no pool child to kill (is the pool prefork?)"
            for pid in children:
                os.kill(pid, signal.SIGKILL)
        self._killed_at = time.monotonic()

    def restart(self, *, timeout: float = 60.0) -> CeleryWorkerProcess:
        """Start a fresh worker after kill() (or stop()).

        On Redis the new worker gets a 1-second visibility timeout and starts at least a second after the kill, so
        at start-up it reclaims the messages the dead worker had taken but not acknowledged, exactly what any
        worker does once the production visibility timeout has passed.
        """
        if self.process is not None and self.process.poll() is None:
            self.stop()
        options = None
        if self.uses_redis:
            options = {"visibility_timeout": 1}
            if self._killed_at is not None:
                time.sleep(max(0.0, 1.2 - (time.monotonic() - self._killed_at)))
        return self.start(timeout=timeout, transport_options=options)

    # --- inspection ------------------------------------------------------------------------------------------------
    @property
    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_for_log(self, pattern: str | re.Pattern, *, timeout: float = 30.0) -> re.Match:
        """Wait until the current worker's log matches `pattern` (e.g. r"Task .*\\[<id>\\] received")."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern

        def found() -> re.Match | None:
            if self.process is not None and self.process.poll() is not None and not regex.search(self.log_text):
                raise RuntimeError(
                    f"celery worker exited with code {self.process.returncode} before logging {regex.pattern!r}; "
                    f"log tail:\n{tail(self.log_path)}"
                )
            return regex.search(self.log_text)

        try:
            return wait_until(found, timeout=timeout, what=f"worker log to match {regex.pattern!r}", interval=0.1)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; log tail:\n{tail(self.log_path)}") from None


def _child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children
