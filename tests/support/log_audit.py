"""The whole test run's logs, grepped for secrets (issue 17). Registered from tests/conftest.py.

Every record logged during the run goes, through the production handler's filters and JSON formatter
(portal/logging.py), to var/test-logs/run-<pid>.jsonl. When the run ends, that file is searched for the demo
password, the test webhook secret, anything shaped like one of our API keys or tokens and Stripe secret keys; a hit
fails the run (exit status 1) and prints the offending lines. A secret that reaches a log line in any test — a
failed sign-in, a webhook refusal, an exception message — is caught here, not in production.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

SECRET_PATTERNS = [
    re.compile(re.escape("continuum-demo")),  # the demo password (portal/management/commands/seed_demo.py)
    re.compile(r"whsec_[A-Za-z0-9_]{6,}"),  # a webhook signing secret (Stripe's shape; tests' WEBHOOK_SECRET)
    re.compile(r"\b(?:ck|cat|cst)_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}"),  # a whole API key / access / service token
    re.compile(r"\b(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{10,}"),  # a Stripe secret or restricted key
]
_state: dict = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    from django.conf import settings

    from portal.logging import JsonFormatter, RedactSecretsFilter, RequestIdFilter

    directory = Path(settings.VAR_DIR) / "test-logs"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"run-{os.getpid()}.jsonl"
    path.unlink(missing_ok=True)
    # Append mode: django.setup()'s dictConfig closes every existing handler, and a closed FileHandler reopens its
    # file on the next record only in append mode (it drops records in "w" mode).
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    _state.update(handler=handler, path=path)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # django.setup() (pytest-django runs it after the session starts) and any later dictConfig replace the root
    # handlers: put ours back.
    handler = _state.get("handler")
    root = logging.getLogger()
    if handler is not None and handler not in root.handlers:
        root.addHandler(handler)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    handler = _state.pop("handler", None)
    if handler is None:
        return
    logging.getLogger().removeHandler(handler)
    handler.close()
    path: Path = _state.pop("path")
    hits = []
    lines = 0
    with open(path, encoding="utf-8", errors="replace") as log:
        for number, line in enumerate(log, 1):
            lines = number
            if any(pattern.search(line) for pattern in SECRET_PATTERNS):
                hits.append((number, line.strip()[:400]))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    if hits:
        write(f"log audit: {len(hits)} log line(s) of this run carry a secret ({path}):")
        for number, line in hits[:20]:
            write(f"  line {number}: {line}")
        session.exitstatus = 1
    else:
        write(f"log audit: {lines} log lines of this run, no password, token, API key or secret in them")
        path.unlink(missing_ok=True)
