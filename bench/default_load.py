"""Load on the zero-setup default (issue 17): what `make run` starts, under concurrent users.

    .venv/bin/python bench/default_load.py [--seconds 60] [--clients 20] [--port 8131] [--keep]

Builds a fresh demo under var/bench-default/ (migrate + seed_demo: the `make run` data, never your own var/), starts
the Procfile under honcho exactly as `make run` does (runserver + Celery worker with its prefork pool + beat, on
SQLite and the embedded SQLAlchemy broker), and runs `--clients` concurrent clients for `--seconds`. Each client acts
for one demo customer's owner and loops over the mix a customer's day brings:

* the portal dashboard page (session cookie) and the invoice list and one invoice (API, bearer token);
* seat-change previews, and applies of the previewed seats with the preview's version (increases issue a prorated
  invoice now, so the worker renders PDFs and sends e-mail meanwhile; decreases are scheduled);
* tax-exemption certificate uploads (multipart PDF).

It prints requests/s, p50/p95/p99 per endpoint, the status codes, and the count of 5xx, which must be 0 (exit status
1 otherwise). 4xx answers (a stale preview version 409, an exemption rule 422) are the product speaking, not errors.
The API's per-principal throttle is raised for the run (API_THROTTLE_RATE), so that 20 clients sharing four owners
measure the stack, not the throttle. Figures and how to read them: docs/performance.md ("The zero-setup default").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIX = [  # (endpoint, weight)
    ("dashboard", 3),
    ("invoice_list", 3),
    ("invoice_detail", 2),
    ("seat_preview", 3),
    ("seat_apply", 2),
    ("exemption_upload", 1),
]
OWNERS = ["owner@acme.test", "owner@globex.test", "owner@initech.test", "owner@umbrella.test"]
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "8131")))
    parser.add_argument("--var-dir", default=str(ROOT / "var" / "bench-default"))
    parser.add_argument("--keep", action="store_true", help="keep the var dir (database, logs, mail) afterwards")
    return parser.parse_args()


def prepare(var_dir: Path) -> list[dict]:
    """Fresh demo data; one credential set per demo owner (a bearer token and a portal session)."""
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)
    call_command("seed_demo", verbosity=0)

    from portal.services.api_keys import access_token_create
    from subscriptions.models import Subscription, User

    actors = []
    for email in OWNERS:
        user = User.objects.get(email=email)
        membership = user.memberships.select_related("customer").first()
        customer = membership.customer
        subscription = (
            Subscription.objects.filter(customer=customer, status__in=["active", "trialing"]).order_by("pk").first()
        )
        if subscription is None:
            continue
        _, token = access_token_create(user=user)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        actors.append(
            {
                "email": email,
                "customer": customer.pk,
                "subscription": subscription.pk,
                "token": token,
                "session": session.session_key,
            }
        )
    connections.close_all()  # the bench process holds no SQLite connection while the stack runs
    return actors


def start_stack(var_dir: Path, port: int, env: dict) -> subprocess.Popen:
    log = open(var_dir / "run.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "honcho"), "start", "-f", "Procfile", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_healthy(base: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"the stack did not answer {base}/healthz within {timeout:.0f}s (see run.log)")


class Client(threading.Thread):
    def __init__(self, base: str, actor: dict, until: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.base, self.actor, self.until = base, actor, until
        self.random = random.Random(seed)
        self.samples: list[tuple[str, int, float]] = []  # (endpoint, status, seconds); status 0 = no answer
        self.failures: list[str] = []
        self.invoice_ids: list[int] = []

    def request(self, endpoint: str, method: str, path: str, *, body: bytes | None = None, headers=None):
        headers = dict(headers or {})
        if path.startswith("/api/"):
            headers["Authorization"] = f"Bearer {self.actor['token']}"
        else:
            headers["Cookie"] = f"sessionid={self.actor['session']}"
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        started = time.perf_counter()
        status, payload = 0, b""
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        except OSError as error:
            self.failures.append(f"{endpoint}: {type(error).__name__}: {error}")
        self.samples.append((endpoint, status, time.perf_counter() - started))
        if status >= 500:
            self.failures.append(f"{endpoint} {status}: {payload[:300]!r}")
        return status, payload

    def json_post(self, endpoint: str, path: str, data: dict):
        return self.request(
            endpoint, "POST", path, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
        )

    def run(self) -> None:
        customer, subscription = self.actor["customer"], self.actor["subscription"]
        api = f"/api/v1/customers/{customer}"
        seats_path = f"{api}/subscriptions/{subscription}/seat-changes/"
        endpoints = [name for name, weight in MIX for _ in range(weight)]
        while time.monotonic() < self.until:
            endpoint = self.random.choice(endpoints)
            if endpoint == "dashboard":
                self.request(endpoint, "GET", f"/c/{customer}/")
            elif endpoint == "invoice_list":
                status, payload = self.request(endpoint, "GET", f"{api}/invoices/")
                if status == 200:
                    self.invoice_ids = [item["id"] for item in json.loads(payload)["results"]][:20]
            elif endpoint == "invoice_detail" and self.invoice_ids:
                self.request(endpoint, "GET", f"{api}/invoices/{self.random.choice(self.invoice_ids)}/")
            elif endpoint in ("seat_preview", "seat_apply"):
                seats = self.random.randint(10, 30)
                status, payload = self.json_post("seat_preview", seats_path + "preview/", {"seats": seats})
                if endpoint == "seat_apply" and status == 200:
                    version = json.loads(payload)["version"]
                    self.json_post("seat_apply", seats_path, {"seats": seats, "version": version})
            elif endpoint == "exemption_upload":
                boundary = uuid.uuid4().hex
                fields = {
                    "jurisdiction": "US-NY",
                    "certificate_number": f"NY-{uuid.uuid4().hex[:10]}",
                    "expires_on": time.strftime("%Y-12-31", time.gmtime(time.time() + 400 * 86400)),
                    "exemption_type": "resale",
                }
                parts = [
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items()
                ]
                parts.append(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="certificate"; filename="cert.pdf"\r\n'
                    "Content-Type: application/pdf\r\n\r\n".encode()
                    + PDF
                    + b"\r\n"
                )
                parts.append(f"--{boundary}--\r\n".encode())
                self.request(
                    endpoint,
                    "POST",
                    f"{api}/tax-exemptions/",
                    body=b"".join(parts),
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def report(clients: list[Client], elapsed: float) -> int:
    samples = [sample for client in clients for sample in client.samples]
    by_endpoint: dict[str, list[float]] = defaultdict(list)
    statuses: dict[str, Counter] = defaultdict(Counter)
    for endpoint, status, seconds in samples:
        by_endpoint[endpoint].append(seconds)
        statuses[endpoint][status] += 1
    total_5xx = sum(count for c in statuses.values() for status, count in c.items() if status >= 500)
    no_answer = sum(c[0] for c in statuses.values())
    rate = len(samples) / elapsed
    print(f"\n{len(samples)} requests in {elapsed:.1f}s = {rate:.1f} requests/s, {len(clients)} clients")
    print(f"{'endpoint':<18}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'mean ms':>9}  statuses")
    for endpoint, _ in MIX:
        values = by_endpoint.get(endpoint)
        if not values:
            continue
        codes = " ".join(f"{status}:{count}" for status, count in sorted(statuses[endpoint].items()))
        p50, p95, p99 = (percentile(values, q) * 1000 for q in (0.5, 0.95, 0.99))
        mean = statistics.fmean(values) * 1000
        print(f"{endpoint:<18}{len(values):>6}{p50:>9.0f}{p95:>9.0f}{p99:>9.0f}{mean:>9.0f}  {codes}")
    print(f"5xx: {total_5xx}   no answer (timeout/connection): {no_answer}")
    for failure in [f for client in clients for f in client.failures][:10]:
        print("  ", failure)
    return 1 if total_5xx or no_answer else 0


def main() -> int:
    args = parse_args()
    var_dir = Path(args.var_dir)
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    base = f"http://127.0.0.1:{args.port}"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_BROKER_TRANSPORT_OPTIONS", "CACHE_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "CONTINUUM_VAR_DIR": str(var_dir),
            "DJANGO_DEBUG": "1",  # as `make run`
            "SITE_URL": base,
            "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "API_THROTTLE_RATE": "1000000/minute",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    os.environ.clear()
    os.environ.update(env)
    print(f"preparing the demo under {var_dir} (migrate + seed_demo) …", flush=True)
    actors = prepare(var_dir)
    stack = start_stack(var_dir, args.port, env)
    try:
        wait_healthy(base)
        print(f"stack up on {base}; {args.clients} clients for {args.seconds:.0f}s …", flush=True)
        until = time.monotonic() + args.seconds
        clients = [Client(base, actors[n % len(actors)], until, seed=n) for n in range(args.clients)]
        started = time.monotonic()
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=args.seconds + 120)
        status = report(clients, time.monotonic() - started)
        log_text = (var_dir / "run.log").read_text(errors="replace")
        locked = log_text.count("database is locked") + log_text.count("OperationalError")
        print(f"'database is locked' / OperationalError in the web/worker/beat log: {locked}")
        return status or (1 if locked else 0)
    finally:
        # Ctrl-C as a terminal sends it; honcho stops web, worker and beat and waits for them.
        try:
            os.killpg(stack.pid, signal.SIGINT)
            stack.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(stack.pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
