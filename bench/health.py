"""Health-score benchmark: build N customers (bulk inserts) and score them all, printing seconds and queries per chunk.

    .venv/bin/python bench/health.py [--customers 10000]

DATABASE_URL defaults to a fresh SQLite file var/bench-health.sqlite3 (a postgres:// URL works too; its tables are
flushed). Target (issue 20): 10,000 customers in under 60 s, a constant number of queries per chunk. The floor is
the same number of customers read back once (one SELECT per chunk), measured in the same run, so the ratio holds
on a busy machine. Figures: docs/performance.md ("Customer health").
"""

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DB = ROOT / "var" / "bench-health.sqlite3"
os.environ.setdefault("DATABASE_URL", f"sqlite:///{DEFAULT_DB}")
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ.setdefault("LOG_LEVEL", "WARNING")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    args = parser.parse_args()
    if os.environ["DATABASE_URL"].startswith("sqlite") and DEFAULT_DB.exists():
        DEFAULT_DB.unlink()
    DEFAULT_DB.parent.mkdir(exist_ok=True)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    if not os.environ["DATABASE_URL"].startswith("sqlite"):
        call_command("flush", interactive=False, verbosity=0)

    from billing.services.health import CHUNK_SIZE
    from portal.services.health import customer_health_recompute
    from subscriptions import clock
    from subscriptions.models import Customer, Membership, User

    built = time.perf_counter()
    Customer.objects.bulk_create(
        [Customer(name=f"Bench {i}", currency="USD") for i in range(args.customers)], batch_size=1000
    )
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    User.objects.bulk_create(
        [User(email=f"u{i}@bench.test", last_login=clock.now() - timedelta(days=i % 60)) for i in range(len(ids))],
        batch_size=1000,
    )
    users = list(User.objects.filter(email__endswith="@bench.test").order_by("pk").values_list("pk", flat=True))
    Membership.objects.bulk_create(
        [Membership(customer_id=c, user_id=u, role="owner") for c, u in zip(ids, users, strict=True)], batch_size=1000
    )
    print(f"built {len(ids)} customers in {time.perf_counter() - built:.1f} s")

    floor_start = time.perf_counter()
    for start in range(0, len(ids), CHUNK_SIZE):
        list(Customer.objects.filter(pk__in=ids[start : start + CHUNK_SIZE]).values_list("pk", "name"))
    floor = time.perf_counter() - floor_start

    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        scored = customer_health_recompute(customer_ids=ids)
        seconds = time.perf_counter() - start
    chunks = -(-len(ids) // CHUNK_SIZE)
    print(f"scored {scored} customers in {seconds:.2f} s (target < 60 s)")
    print(f"queries: {len(queries)} in {chunks} chunks of {CHUNK_SIZE} = {len(queries) / chunks:.1f} per chunk")
    print(f"floor (read each chunk once): {floor:.3f} s; ratio {seconds / max(floor, 1e-6):.0f}×")


if __name__ == "__main__":
    main()
