"""Test harness: marker rules, real local servers and processes. Registered from tests/conftest.py.

Markers (declared in pyproject.toml):
* `integration` — needs real servers or a real Celery worker process. Skipped unless CONTINUUM_INTEGRATION=1; with
  it set (CI's second pass) such a test may not skip at all: a skip is reported as a failure, so a missing server
  can never turn into a green run.
* `postgres` — needs PostgreSQL. Skipped when the database is not PostgreSQL, unless CONTINUUM_REQUIRE_POSTGRES=1
  (CI's second pass), which stops the whole run at start-up if DATABASE_URL is not PostgreSQL.
* `browser` — drives Debian's /usr/bin/chromium through Playwright (the `page` fixture; `screenshot` saves PNGs under
  var/screenshots/, or docs/screenshots/ with CONTINUUM_SCREENSHOTS=docs — `make screenshots`).

See docs/operations.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.http_receiver import HttpReceiver
from tests.support.processes import stop_process_group, tail, wait_until

INTEGRATION = os.environ.get("CONTINUUM_INTEGRATION") == "1"
REQUIRE_POSTGRES = os.environ.get("CONTINUUM_REQUIRE_POSTGRES") == "1"
CHROMIUM = os.environ.get("CONTINUUM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
_POSTGRES_SKIP = "needs PostgreSQL (DATABASE_URL=postgres://…; see docs/operations.md)"


def _uses_postgres() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _var_dir() -> Path:
    from django.conf import settings

    return Path(settings.VAR_DIR)


# --- markers --------------------------------------------------------------------------------------------------------
def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_POSTGRES and not _uses_postgres():
        raise pytest.UsageError(
            "CONTINUUM_REQUIRE_POSTGRES=1 but the database is not PostgreSQL: export DATABASE_URL=postgres://… "
            "(scripts/services-up prints it)"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_integration = pytest.mark.skip(
        reason="integration test: set CONTINUUM_INTEGRATION=1 to run (CI's second pass does; see docs/operations.md)"
    )
    postgres = _uses_postgres()
    for item in items:
        if item.get_closest_marker("postgres") and not postgres:
            item.add_marker(pytest.mark.skip(reason=_POSTGRES_SKIP))
            item.stash[_pg_skip_key] = True
        elif item.get_closest_marker("integration") and not INTEGRATION:
            item.add_marker(skip_integration)


_pg_skip_key = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    # CONTINUUM_INTEGRATION=1 promises the integration tests really ran: any skip (a fixture finding no server, a
    # pytest.skip() in the test) is a failure. Only the configured "not PostgreSQL" skip is left alone, and CI makes
    # that impossible with CONTINUUM_REQUIRE_POSTGRES=1.
    if (
        INTEGRATION
        and report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("integration")
        and not item.stash.get(_pg_skip_key, False)
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"integration test skipped while CONTINUUM_INTEGRATION=1 forbids skipping: {reason}"
    return report


# --- Celery worker --------------------------------------------------------------------------------------------------
@pytest.fixture
def celery_worker_process(transactional_db, settings) -> Iterator:
    """A real Celery worker process on the configured broker and the test database; stopped after the test.

    The test process stops running tasks eagerly while this fixture is active: `.delay()` goes through the broker
    to the worker. Use `@pytest.mark.integration` and `@pytest.mark.django_db(transaction=True)`. `.kill()`,
    `.restart()` and `.wait_for_log()` are on the returned object (tests/support/celery_worker.py).
    """
    from django.db import connection

    from portal.celery import app
    from tests.support.celery_worker import CeleryWorkerProcess, database_url_for, isolated_broker

    var_dir = _var_dir()
    token = uuid.uuid4().hex[:12]
    broker_url, extra_options = isolated_broker(settings.CELERY_BROKER_URL, var_dir=var_dir, token=token)
    transport_options = {**(settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}), **extra_options}
    worker = CeleryWorkerProcess(
        database_url=database_url_for(connection.settings_dict),
        broker_url=broker_url,
        transport_options=transport_options,
        log_dir=var_dir / "test-logs",
    )

    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url", "broker_transport_options")}
    app.conf.update(task_always_eager=False, broker_url=broker_url, broker_transport_options=transport_options)
    _reset_producer_pools(app)
    try:
        worker.start()
        yield worker
    finally:
        worker.stop()
        app.conf.update(saved)
        _reset_producer_pools(app)
        if broker_url.startswith("sqla+sqlite:///"):
            Path(broker_url.removeprefix("sqla+sqlite:///")).unlink(missing_ok=True)


def _reset_producer_pools(app) -> None:
    # The app caches a connection pool and a producer pool for the broker it first talked to; drop both so the next
    # publish uses the broker configured now (Celery does the same in its after-fork hook).
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


# --- localstripe ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (http://127.0.0.1:<port>) of a localstripe server with fresh state, for the whole session."""
    import urllib.error
    import urllib.request

    workdir = tmp_path_factory.mktemp("localstripe")
    port_file = workdir / "port"
    log_path = workdir / "localstripe.log"
    # The same wrapper `manage.py simulate_year` starts, run as a plain script so it does not import the project.
    script = Path(__file__).resolve().parents[2] / "portal" / "simulation" / "localstripe_server.py"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(script), "--port", "0", "--port-file", str(port_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def answering() -> str | None:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited with code {process.returncode}:\n{tail(log_path)}")
        if not port_file.exists():
            return None
        url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        request = urllib.request.Request(f"{url}/v1/customers", headers={"Authorization": "Bearer sk_test_harness"})
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return url if response.status == 200 else None
        except (urllib.error.URLError, ConnectionError):
            return None

    try:
        url = wait_until(answering, timeout=30, what="localstripe to answer", interval=0.1)
        yield url
    finally:
        stop_process_group(process, timeout=5)


@pytest.fixture
def localstripe(localstripe_server: str) -> str:
    """The localstripe base URL, emptied of every object the previous test created."""
    import urllib.request

    request = urllib.request.Request(f"{localstripe_server}/_config/data", method="DELETE")
    with urllib.request.urlopen(request, timeout=5):
        pass
    return localstripe_server


# --- outbound HTTP receiver -----------------------------------------------------------------------------------------
@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """A started HttpReceiver (tests/support/http_receiver.py) on 127.0.0.1; configure it in the test."""
    with HttpReceiver() as receiver:
        yield receiver


# --- browser --------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser() -> Iterator:
    """Headless Debian Chromium driven by Playwright's sync API, shared by the session."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium (or set CONTINUUM_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread while it is started, which makes Django
    # refuse ORM calls from the test ("async unsafe"). The tests themselves are synchronous, so allow it for as long
    # as the browser lives.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def screenshot_dir() -> Path:
    """Where browser tests save their screenshots.

    By default under var/screenshots/ (ignored by git), so running the suite never rewrites tracked files.
    `CONTINUUM_SCREENSHOTS=docs` (what `make screenshots` sets) regenerates the README images in docs/screenshots/;
    any other value is taken as a directory.
    """
    target = os.environ.get("CONTINUUM_SCREENSHOTS", "")
    if target == "docs":
        return Path(__file__).resolve().parents[2] / "docs" / "screenshots"
    if target:
        return Path(target)
    return _var_dir() / "screenshots"


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """`screenshot(page, "dashboard")` saves a full-page PNG under `screenshot_dir()` and returns its path."""

    def _shot(page, name: str) -> Path:
        directory = screenshot_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shot


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh Playwright page (own context: no cookies shared between tests); 10 s default timeout."""
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
