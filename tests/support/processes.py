"""Small helpers for the real local processes the tests start (Celery worker, localstripe)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now (prefer servers that bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `predicate` until it returns something truthy; raise a readable TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stop_process_group(process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    """Stop a process started with `start_new_session=True` and everything left in its group: TERM, then KILL.

    timeout=0 sends KILL straight away (to clean up after a process that already exited or was told to stop).
    """
    steps = [(signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)] if timeout else [(signal.SIGKILL, 5.0)]
    for sig, wait in steps:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log written)"
