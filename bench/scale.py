"""Proof under load and faults (issue 17): the production profile (Procfile.prod, as `make run-prod` starts it) on
PostgreSQL + Redis, driven by concurrent API clients while a Celery worker is SIGKILLed and restarted and the
database's connections are cut with pg_terminate_backend. Afterwards it asserts, and prints:

  * 0 lost seat updates: every acknowledged seat change is in the seat ledger, the ledger agrees with each
    subscription's seats, and each subscription has the seats its client was last told;
  * every entitlement converged to desired within 30 s of the end (no customer drifted, none unsettled);
  * invoice numbers gapless and unique per series;
  * no 5xx outside the fault windows, and every request the client retried after a 5xx or a dropped connection
    succeeded in the end;
  * throughput and p50/p95/p99 per endpoint.

    eval "$(scripts/services-up)"          # or just run it as root: scripts/run-prod calls services-up itself
    .venv/bin/python bench/scale.py                    # 20 clients, 60 s, faults on (the issue's figure)
    .venv/bin/python bench/scale.py --quick            # 8 clients, 25 s: the bounded CI version (.ci/run)

It uses a database of its own (RUN_PROD_DB, default continuum_bench_scale, created by scripts/services-up and
dropped at the end unless --keep), its own Redis db (RUN_PROD_REDIS_DB, default 11, flushed first) and its own port
(RUN_PROD_PORT, default 8090), so it never touches a developer's `make run-prod`. The PostgreSQL server itself is
never restarted: other users of the same server keep working. Exits 1 when an assertion fails. Figures:
docs/performance.md ("Scale-out").
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = ROOT / "var" / "bench-scale"
PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PROCESSES = ("web", "worker_provisioning", "worker_billing", "worker_webhooks", "beat")
CONVERGE_SECONDS = 30
RETRIES = 6


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# --- the topology ---------------------------------------------------------------------------------------------------


def prepared_environment(args) -> dict[str, str]:
    """What `scripts/run-prod --prepare` exports (services up, migrated, static collected, demo catalog loaded)."""
    env = {
        **os.environ,
        "RUN_PROD_PORT": str(args.port),
        "RUN_PROD_DB": args.db,
        "RUN_PROD_REDIS_DB": str(args.redis_db),
        "RUN_PROD_COLLECTSTATIC": os.environ.get("RUN_PROD_COLLECTSTATIC", "auto"),
    }
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
        env.pop(name, None)  # run-prod derives them for the bench's own database and Redis db
    script = 'eval "$(scripts/run-prod --prepare)" && env -0'
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, check=False)
    if out.returncode != 0:
        sys.stderr.write(out.stderr.decode(errors="replace")[-4000:])
        raise SystemExit("scripts/run-prod --prepare failed")
    prepared = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    prepared.update(
        {
            # The drift check is the safety net that re-enqueues what a killed worker had taken; production runs
            # it every 10 minutes, the bench every few seconds so "converged within 30 s" is meaningful.
            "PROVISIONING_DRIFT_CHECK_SECONDS": str(args.drift_check_seconds),
            # One key per client, many requests a second: the production rate limit is not what is measured here.
            "API_THROTTLE_RATE": "1000000/minute",
            "API_ANON_THROTTLE_RATE": "1000000/minute",
            "API_TOKEN_THROTTLE_RATE": "1000000/minute",  # sign-ups share the token endpoint's per-address limit
            "LOG_LEVEL": "WARNING",
            "GUNICORN_ACCESS_LOG": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return prepared


def procfile_commands() -> dict[str, str]:
    commands = {}
    for line in (ROOT / "Procfile.prod").read_text().splitlines():
        if line.strip() and not line.startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


class Topology:
    """The Procfile.prod processes, each in a session of its own so one can be SIGKILLed (with its children)."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.commands = procfile_commands()
        self.processes: dict[str, subprocess.Popen] = {}
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def start(self, name: str) -> None:
        log = open(LOG_DIR / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.processes[name] = subprocess.Popen(
            ["bash", "-c", f"exec {self.commands[name]}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self, name: str) -> None:
        """SIGKILL the whole process group: the worker's parent and its pool, mid-task, no shutdown."""
        os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait_healthy(base: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the web process did not answer {base}/healthz within {timeout:.0f}s (see {LOG_DIR}/web.log)")


# --- the clients ----------------------------------------------------------------------------------------------------


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    server_errors: list[tuple[float, str, str]] = field(default_factory=list)  # (t, endpoint, status or exception)
    retried: int = 0
    retried_failed: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def record(self, endpoint: str, seconds: float) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)


class Client:
    """One customer's integration: its own owner token, customer and subscription; a realistic mix of calls."""

    def __init__(self, base: str, index: int, stats: Stats, run_id: str, uploads: bool):
        self.base = base
        self.index = index
        self.stats = stats
        self.run_id = run_id
        self.uploads = uploads
        self.session = requests.Session()
        self.acknowledged_seats: int | None = None
        self.applies = 0
        self.random = random.Random(index)

    def call(self, endpoint: str, method: str, path: str, *, ok=(200, 201), **kwargs) -> requests.Response | None:
        """One logical request; a 5xx or a dropped connection is retried (same Idempotency-Key) with backoff."""
        for attempt in range(RETRIES + 1):
            started = time.monotonic()
            try:
                response = self.session.request(method, f"{self.base}{path}", timeout=30, **kwargs)
            except requests.RequestException as exc:
                response, problem = None, type(exc).__name__
            else:
                problem = str(response.status_code) if response.status_code >= 500 else ""
            if not problem:
                self.stats.record(endpoint, time.monotonic() - started)
                if attempt:
                    with self.stats.lock:
                        self.stats.retried += 1
                if response.status_code not in ok:
                    with self.stats.lock:
                        self.stats.unexpected.append(f"{endpoint} {response.status_code} {response.text[:200]}")
                    return None
                return response
            with self.stats.lock:
                self.stats.server_errors.append((time.time(), endpoint, problem))
            time.sleep(min(4.0, 0.25 * 2**attempt))
        with self.stats.lock:
            self.stats.retried_failed.append(endpoint)
        return None

    def sign_up(self) -> None:
        email = f"bench-{self.run_id}-{self.index}@scale.test"
        body = {
            "company": f"Scale {self.run_id} {self.index}",
            "country": "US",
            "region": "CA",
            "currency": "USD",
            "email": email,
            "password": f"bench-{uuid.uuid4().hex}",
            "package": "team",
            "interval": "month",
            "seats": 5,
            "billing_address": {
                "line1": f"{self.index} Market Street",
                "city": "San Francisco",
                "postal_code": "94105",
            },
        }
        response = self.call("signup", "POST", "/api/v1/signup/", json=body, headers={"Idempotency-Key": email})
        if response is None:
            raise SystemExit(f"client {self.index}: sign-up failed: {self.stats.unexpected[-1:]}")
        data = response.json()
        self.customer_id = data["customer"]["id"]
        self.session.headers["Authorization"] = f"Bearer {data['token']}"
        subscriptions = self.call("subscriptions", "GET", f"/api/v1/customers/{self.customer_id}/subscriptions/")
        first = subscriptions.json()["results"][0]
        self.subscription_id, self.version, self.seats = first["id"], first["version"], first["seats"]
        self.acknowledged_seats = self.seats

    @property
    def c(self) -> str:
        return f"/api/v1/customers/{self.customer_id}"

    @property
    def s(self) -> str:
        return f"{self.c}/subscriptions/{self.subscription_id}"

    def dashboard(self) -> None:
        self.call("GET customer", "GET", f"{self.c}/")
        self.call("GET subscriptions", "GET", f"{self.c}/subscriptions/")
        self.call("GET entitlements", "GET", f"{self.c}/entitlements/")

    def invoices(self) -> None:
        listing = self.call("GET invoices", "GET", f"{self.c}/invoices/")
        if listing is not None and listing.json()["results"]:
            invoice = self.random.choice(listing.json()["results"])
            self.call("GET invoice", "GET", f"{self.c}/invoices/{invoice['id']}/")

    def seat_preview(self) -> None:
        seats = max(3, min(100, self.seats + self.random.choice((-2, -1, 1, 2, 3))))
        self.call("POST seat preview", "POST", f"{self.s}/seat-changes/preview/", json={"seats": seats})

    def seat_apply(self) -> None:
        """Growing teams: one more seat, applied at once and billed (a proration invoice), never a scheduled cut."""
        if self.seats >= 100:
            return self.seat_preview()
        seats = self.seats + 1
        preview = self.call("POST seat preview", "POST", f"{self.s}/seat-changes/preview/", json={"seats": seats})
        if preview is None:
            return None
        key = f"{self.run_id}-{self.index}-{uuid.uuid4().hex}"
        response = self.call(
            "POST seat change",
            "POST",
            f"{self.s}/seat-changes/",
            ok=(201, 409),
            json={"seats": seats, "version": preview.json()["version"]},
            headers={"Idempotency-Key": key},
        )
        if response is None:
            return None
        if response.status_code == 409:  # a retried apply raced its own first attempt; read the truth back
            current = self.call("GET subscription", "GET", f"{self.s}/")
            if current is not None:
                self.seats = self.acknowledged_seats = current.json()["seats"]
            return None
        self.applies += 1
        self.seats = self.acknowledged_seats = seats
        return None

    def exemption_upload(self) -> None:
        expires = (datetime.now(UTC).date() + timedelta(days=400)).isoformat()
        self.call(
            "POST tax exemption",
            "POST",
            f"{self.c}/tax-exemptions/",
            files={"certificate": ("certificate.pdf", PDF_BYTES, "application/pdf")},
            data={
                "jurisdiction": "US-CA",
                "certificate_number": f"CA-{uuid.uuid4().hex[:10]}",
                "expires_on": expires,
                "exemption_type": "resale",
            },
        )

    def run(self, deadline: float) -> None:
        actions = [(self.dashboard, 30), (self.invoices, 25), (self.seat_preview, 20), (self.seat_apply, 20)]
        if self.uploads:
            actions.append((self.exemption_upload, 5))
        choices, weights = zip(*actions, strict=True)
        if self.uploads:
            self.exemption_upload()  # at least one per uploading client, however short the run
        while time.monotonic() < deadline:
            self.random.choices(choices, weights)[0]()


def approve_first_invoices(clients: list[Client]) -> int:
    """Billing staff review each new customer's first invoice (the back office's "approve and issue"), so the
    customers are established and their seat changes during the run are invoiced — and numbered — at once."""
    import django

    django.setup()
    from django.db import connection

    from billing.models import Invoice, InvoiceStatus
    from billing.services.invoices import invoice_approve_and_issue
    from subscriptions.models import User

    staff = User.objects.get(email="billing@continuum.test")
    approved = 0
    held = Invoice.objects.filter(status=InvoiceStatus.HELD, customer_id__in=[c.customer_id for c in clients])
    for invoice in held:
        if {reason["code"] for reason in invoice.hold_reasons} == {"first_invoice"}:
            invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff, note="bench/scale.py: first invoice reviewed")
            approved += 1
    connection.close()
    return approved


# --- the faults -----------------------------------------------------------------------------------------------------


def terminate_connections(database_url: str, db_name: str) -> int:
    """pg_terminate_backend on every other connection to the bench's own database (never another database's)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (db_name,),
        ).fetchall()
    return sum(1 for (ok,) in rows if ok)


# --- the checks -----------------------------------------------------------------------------------------------------


def verify(clients: list[Client], started_at: datetime) -> tuple[list[str], dict]:
    """Read the database (as the app does) and return the violated assertions plus the facts behind them."""
    import django

    django.setup()
    from django.db import connection

    from billing.models import Invoice, InvoiceNumberSequence
    from subscriptions.models import SeatLedgerEntry, Subscription
    from subscriptions.services.provisioning import entitlements_drifted

    connection.close()  # a connection from before the fault window may have been terminated
    failures: list[str] = []
    facts: dict = {}

    # 0 lost seat updates
    subscriptions = Subscription.objects.in_bulk([c.subscription_id for c in clients])
    lost = 0
    for client in clients:
        subscription = subscriptions[client.subscription_id]
        ledger = list(SeatLedgerEntry.objects.filter(subscription=subscription).order_by("effective_at", "id"))
        during = [entry for entry in ledger if entry.created_at >= started_at]
        last = ledger[-1].seats_to if ledger else None
        if last is not None and last != subscription.seats:
            failures.append(
                f"subscription {subscription.pk}: ledger says {last} seats, the subscription {subscription.seats}"
            )
        if subscription.seats != client.acknowledged_seats:
            lost += 1
            failures.append(
                f"subscription {subscription.pk}: client was told {client.acknowledged_seats}, has {subscription.seats}"
            )
        if len(during) < client.applies:
            lost += client.applies - len(during)
            failures.append(
                f"subscription {subscription.pk}: {client.applies} changes acknowledged, {len(during)} in ledger"
            )
    facts["seat_changes_acknowledged"] = sum(c.applies for c in clients)
    facts["lost_seat_updates"] = lost

    # entitlements converged within 30 s of the end
    customer_ids = [c.customer_id for c in clients]
    began = time.monotonic()
    drifted = entitlements_drifted(customer_ids, stale_after_seconds=10)
    while drifted and time.monotonic() - began < CONVERGE_SECONDS:
        time.sleep(1)
        drifted = entitlements_drifted(customer_ids, stale_after_seconds=10)
    facts["entitlements_converged_after_s"] = round(time.monotonic() - began, 1) if not drifted else None
    if drifted:
        failures.append(f"{len(drifted)} customers' entitlements had not converged {CONVERGE_SECONDS}s after the end")

    # invoice numbers gapless and unique per series
    numbering = {}
    for sequence in InvoiceNumberSequence.objects.all():
        numbers = list(
            Invoice.objects.filter(series=sequence.series).exclude(number="").values_list("number", flat=True)
        )
        values = sorted(int(number.rsplit("-", 1)[1]) for number in numbers)
        numbering[sequence.series] = len(values)
        if len(set(numbers)) != len(numbers):
            failures.append(f"series {sequence.series}: duplicate invoice numbers")
        if values != list(range(1, sequence.last_value + 1)):
            failures.append(f"series {sequence.series}: numbers are not 1..{sequence.last_value} without a gap")
    facts["invoice_series"] = numbering
    facts["invoices_issued_during_run"] = Invoice.objects.filter(issued_at__gte=started_at).count()
    return failures, facts


# --- main -----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--quick", action="store_true", help="8 clients for 25 s: the bounded CI version")
    parser.add_argument("--no-faults", action="store_true")
    parser.add_argument("--fault-window", type=float, default=10, help="seconds after a fault in which 5xx may occur")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RUN_PROD_PORT", "8090")))
    parser.add_argument("--db", default=os.environ.get("RUN_PROD_DB", "continuum_bench_scale"))
    parser.add_argument("--redis-db", type=int, default=int(os.environ.get("RUN_PROD_REDIS_DB", "11")))
    parser.add_argument("--drift-check-seconds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the bench database (default: dropped at the end)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds = min(args.clients, 8), min(args.seconds, 25)

    banner = f"bench/scale.py: {args.clients} clients × {args.seconds:.0f}s, faults {'off' if args.no_faults else 'on'}"
    print(banner, flush=True)
    env = prepared_environment(args)
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    sys.path.insert(0, str(ROOT))
    import redis

    redis.Redis.from_url(env["CELERY_BROKER_URL"]).flushdb()

    topology = Topology(env)
    base = f"http://127.0.0.1:{args.port}"
    stats = Stats()
    windows: list[tuple[float, float, str]] = []
    try:
        for name in PROCESSES:
            topology.start(name)
        wait_healthy(base)
        run_id = uuid.uuid4().hex[:8]
        clients = [Client(base, i, stats, run_id, uploads=(i % 4 == 3)) for i in range(args.clients)]
        for client in clients:
            client.sign_up()
            client.seat_apply()  # the customer's first invoice: held for review, as for every new customer
        established = approve_first_invoices(clients)
        print(f"  {len(clients)} customers signed up; {established} first invoices approved by staff", flush=True)
        for client in clients:
            client.applies = 0  # the ledger check counts the changes made during the run
        started_at = datetime.now(UTC)
        stats.latencies.clear()
        stats.retried = 0
        began = time.monotonic()
        deadline = began + args.seconds
        threads = [threading.Thread(target=client.run, args=(deadline,), daemon=True) for client in clients]
        for thread in threads:
            thread.start()

        if not args.no_faults:
            time.sleep(args.seconds / 3)
            at = time.time()
            topology.kill("worker_provisioning")
            print(f"  t={time.monotonic() - began:5.1f}s  SIGKILL worker_provisioning (parent and pool)", flush=True)
            time.sleep(2)
            topology.start("worker_provisioning")
            print(f"  t={time.monotonic() - began:5.1f}s  worker_provisioning restarted", flush=True)
            windows.append((at, time.time() + args.fault_window, "worker kill"))
            time.sleep(max(0.0, began + args.seconds / 2 - time.monotonic()))
            at = time.time()
            terminated = terminate_connections(env["DATABASE_URL"], args.db)
            windows.append((at, at + args.fault_window, "pg_terminate_backend"))
            print(
                f"  t={time.monotonic() - began:5.1f}s  pg_terminate_backend: {terminated} connections cut", flush=True
            )
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        failures, facts = verify(clients, started_at)
    finally:
        topology.stop_all()

    outside = [e for e in stats.server_errors if not any(start <= e[0] <= end for start, end, _ in windows)]
    if outside:
        failures.append(f"{len(outside)} 5xx/dropped requests outside the fault windows: {outside[:5]}")
    if stats.retried_failed:
        failures.append(f"{len(stats.retried_failed)} requests still failing after {RETRIES} retries")
    if stats.unexpected:
        failures.append(f"{len(stats.unexpected)} unexpected 4xx answers, e.g. {stats.unexpected[:3]}")

    total = sum(len(v) for v in stats.latencies.values())
    print(f"\n{total} requests in {elapsed:.1f}s = {total / elapsed:.1f} requests/s ({args.clients} clients)")
    print(f"{'endpoint':<22} {'count':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    table = {}
    for endpoint, values in sorted(stats.latencies.items()):
        row = {
            "count": len(values),
            "rps": round(len(values) / elapsed, 1),
            "p50": round(statistics.median(values) * 1000),
            "p95": round(percentile(values, 95) * 1000),
            "p99": round(percentile(values, 99) * 1000),
        }
        table[endpoint] = row
        print(f"{endpoint:<22} {row['count']:>6} {row['rps']:>7} {row['p50']:>8} {row['p95']:>8} {row['p99']:>8}")
    print(
        f"\n5xx / dropped connections: {len(stats.server_errors)} (all inside fault windows: {not outside}); ", end=""
    )
    print(
        f"requests that needed a retry and then succeeded: {stats.retried}; still failing: {len(stats.retried_failed)}"
    )
    for key, value in facts.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps({"endpoints": table, "facts": facts, "failures": failures}, indent=2))
    if not args.keep:
        drop_database(env["DATABASE_URL"], args.db)
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nall assertions hold")
    return 0


def drop_database(database_url: str, db_name: str) -> None:
    import psycopg
    from psycopg import sql

    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name)))
    except psycopg.Error as exc:  # the role may not own it; the next run reuses it
        print(f"(could not drop {db_name}: {exc})")


if __name__ == "__main__":
    sys.exit(main())
