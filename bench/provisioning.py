"""Provisioning benchmark: latency from a committed seat change to all entitlements active, and drift-check
throughput, with a real Redis broker and one real Celery worker process (prefork, concurrency 1).

    redis-server must be listening (scripts/services-up starts it), then:
    .venv/bin/python bench/provisioning.py [--changes 200] [--customers 10000]

Environment: CELERY_BROKER_URL (default redis://127.0.0.1:6379/7, a Redis database of its own so no other worker
takes the tasks), DATABASE_URL (default: a fresh SQLite file var/bench-provisioning.sqlite3; a postgres:// URL
works too, and its tables are flushed). Targets (issue 5): p95 < 1 s; drift check > 500 customers/s (built-in).
Figures are recorded in docs/performance.md ("Provisioning").
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DB = ROOT / "var" / "bench-provisioning.sqlite3"
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DEFAULT_DB}")
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
os.environ["PROVISIONER_BACKEND"] = "builtin"
os.environ.setdefault("LOG_LEVEL", "WARNING")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def start_worker(log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the worker
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "portal",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname=bench-provisioning-{os.getpid()}@%h",
        ],
        cwd=ROOT,
        env={**os.environ, "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "ready." in log_path.read_text(errors="replace"):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"the Celery worker did not start; see {log_path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()

    if os.environ["DATABASE_URL"] == f"sqlite:///{DEFAULT_DB}":
        DEFAULT_DB.unlink(missing_ok=True)

    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from subscriptions.models import (
        Customer,
        Entitlement,
        EntitlementState,
        Package,
        PackageComponent,
        Price,
        ProvisioningRun,
        Sku,
        SkuKind,
        Subscription,
    )
    from subscriptions.periods import period_end
    from subscriptions.selectors import enablement_status
    from subscriptions.services.changes import subscription_change_seats_apply
    from subscriptions.services.provisioning import entitlements_drift_check
    from subscriptions.services.subscriptions import subscription_create

    broker = settings.CELERY_BROKER_URL
    if not broker.startswith("redis://"):
        raise SystemExit(f"CELERY_BROKER_URL must be a redis:// URL (got {broker})")
    redis.Redis.from_url(broker).flushdb()  # a database of its own: drop tasks a previous run left behind
    call_command("migrate", verbosity=0)
    if connection.vendor == "postgresql":
        call_command("flush", interactive=False, verbosity=0)

    # Catalog: seats per seat, SSO, an API limit.
    package = Package.objects.create(
        slug="bench-team", name="Bench Team", included_seats=1, min_seats=1, max_seats=100_000, intervals=["month"]
    )
    for code, key, kind, value in (
        ("B-SEAT", "seats", "per_seat", None),
        ("B-SSO", "sso", "boolean", None),
        ("B-API", "api_calls_per_month", "limit", 100_000),
    ):
        sku = Sku.objects.create(
            code=code,
            name=code,
            kind=SkuKind.RECURRING_PER_SEAT if kind == "per_seat" else SkuKind.FEATURE,
            feature_key=key,
            feature_value_kind=kind,
            feature_value=value,
        )
        PackageComponent.objects.create(package=package, sku=sku)
    price = Price.objects.create(
        package=package, currency="USD", interval="month", flat_amount_minor=10_000, seat_amount_minor=1_000
    )

    log_path = ROOT / "var" / "bench-provisioning-worker.log"
    worker = start_worker(log_path)
    try:
        # --- 1. latency: committed seat change -> every entitlement active --------------------------------------
        customer = Customer.objects.create(name="Bench latency", country="US", currency="USD")
        subscription = subscription_create(customer=customer, package=package, interval="month", seats=1)
        deadline = time.monotonic() + 30
        while enablement_status(customer).state != "active":
            if time.monotonic() > deadline:
                raise SystemExit(f"the first enablement never completed; see {log_path}")
            time.sleep(0.01)

        latencies = []
        for n in range(args.changes):
            version = Subscription.objects.values_list("version", flat=True).get(pk=subscription.pk)
            target = n + 2
            subscription_change_seats_apply(
                subscription_id=subscription.pk, seats=target, expected_version=version, actor=None
            )
            committed = time.perf_counter()  # the service has committed and queued the task (on_commit)
            while True:
                applied = Entitlement.objects.filter(
                    customer=customer, feature_key="seats", applied_value=target, state=EntitlementState.ACTIVE
                ).exists()
                if applied and enablement_status(customer).state == "active":
                    break
                if time.perf_counter() - committed > 30:
                    raise SystemExit(f"seat change {n} was not applied within 30 s; see {log_path}")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - committed)
        worker_ms = [
            (run.finished_at - run.queued_at).total_seconds() * 1000
            for run in ProvisioningRun.objects.filter(customer=customer, outcome="applied").exclude(queued_at=None)
        ]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()

    p50 = percentile(latencies, 50) * 1000
    p95 = percentile(latencies, 95) * 1000
    print(f"database: {connection.vendor}; broker: {broker}; one worker (prefork, concurrency 1)")
    print(
        f"seat change -> all entitlements active over {len(latencies)} changes: "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(latencies) * 1000:.0f} ms "
        f"(target p95 < 1000 ms: {'met' if p95 < 1000 else 'MISSED'})"
    )
    print(
        f"  (queued -> applied as recorded on the runs: p50 {statistics.median(worker_ms):.0f} ms, "
        f"p95 {percentile(worker_ms, 95):.0f} ms)"
    )

    # --- 2. drift check throughput: every customer drifted (nothing applied yet), built-in backend ------------------
    now = timezone.now()
    start = now.replace(microsecond=0)
    customers = Customer.objects.bulk_create(
        [Customer(name=f"Bench drift {i}", country="US", currency="USD") for i in range(args.customers)],
        batch_size=1000,
    )
    Subscription.objects.bulk_create(
        [
            Subscription(
                customer=c,
                package=package,
                price=price,
                interval="month",
                currency="USD",
                flat_amount_minor=price.flat_amount_minor,
                seat_amount_minor=price.seat_amount_minor,
                included_seats=1,
                seats=1 + i % 50,
                billing_anchor=start,
                current_period_start=start,
                current_period_end=period_end(start, "month"),
            )
            for i, c in enumerate(customers)
        ],
        batch_size=1000,
    )
    total = Customer.objects.count()
    began = time.perf_counter()
    result = entitlements_drift_check()
    repair = time.perf_counter() - began
    began = time.perf_counter()
    clean = entitlements_drift_check()
    scan = time.perf_counter() - began
    active = Entitlement.objects.filter(state=EntitlementState.ACTIVE).count()
    assert result.customers_reconciled == args.customers, result
    assert clean.customers_drifted == 0, clean
    rate = total / repair
    print(
        f"drift check, {total} customers, {result.customers_reconciled} drifted and reconciled (builtin): "
        f"{repair:.2f} s = {rate:.0f} customers/s (target > 500/s: {'met' if rate > 500 else 'MISSED'}); "
        f"{active} entitlements active"
    )
    print(f"drift check, {total} customers, none drifted: {scan:.2f} s = {total / scan:.0f} customers/s")


if __name__ == "__main__":
    main()
