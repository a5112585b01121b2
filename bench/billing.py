"""Billing benchmark (issue 6): billing-run drafting throughput and memory over many subscriptions, renewal
throughput, and invoice PDF render latency.

    .venv/bin/python bench/billing.py [--subscriptions 100000] [--renewals 5000] [--pdfs 50]

DATABASE_URL defaults to postgres://continuum:continuum@127.0.0.1:5432/continuum_bench (created if missing; every
table is flushed first) — scripts/services-up starts PostgreSQL. One process, no Celery: the figures are per worker
process. Targets: > 1,000 invoices drafted per second per process with flat memory; PDF render p95 < 300 ms.
Figures are recorded in docs/performance.md ("Billing").
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://continuum:continuum@127.0.0.1:5432/continuum_bench")
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("PRIVATE_STORAGE_ROOT", str(ROOT / "var" / "bench-private"))


def ensure_database() -> None:
    url = os.environ["DATABASE_URL"]
    if not url.startswith("postgres"):
        return
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--renewals", type=int, default=5_000, help="subscriptions renewed (+drafted) in phase 2")
    parser.add_argument("--pdfs", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=500)
    args = parser.parse_args()

    ensure_database()
    import django

    django.setup()
    from datetime import UTC, datetime

    from django.core.management import call_command
    from django.db import connection

    from billing.models import BillingProfile, Invoice, TaxRate
    from billing.services.billing_run import _unbilled, draft_chunk, renew_chunk
    from billing.services.documents import html_to_pdf, invoice_render_html
    from billing.services.invoices import invoice_approve_and_issue
    from subscriptions.models import Customer, Package, PackageComponent, Price, Sku, Subscription, User

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")

    # --- data ------------------------------------------------------------------------------------------------------
    n = args.subscriptions
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    TaxRate.objects.create(
        country="US",
        region="CA",
        name="CA sales tax",
        rate="7.25",
        tax_categories=["saas"],
        effective_from="2020-01-01",
    )
    package = Package.objects.create(slug="team", name="Team", included_seats=5, intervals=["month"])
    for code, kind in (("PLAT-BASE-M", "recurring_flat"), ("SEAT-STD-M", "recurring_per_seat")):
        PackageComponent.objects.create(package=package, sku=Sku.objects.create(code=code, name=code, kind=kind))
    price = Price.objects.create(
        package=package, currency="USD", interval="month", flat_amount_minor=19_900, seat_amount_minor=1_500
    )
    t0 = time.perf_counter()
    batch = 5_000
    for offset in range(0, n, batch):
        size = min(batch, n - offset)
        customers = Customer.objects.bulk_create(
            Customer(name=f"Bench {offset + i}", legal_name=f"Bench {offset + i} Inc", country="US", region="CA")
            for i in range(size)
        )
        BillingProfile.objects.bulk_create(
            BillingProfile(
                customer=c,
                legal_name=c.legal_name,
                address_line1="1 Main St",
                city="San Francisco",
                region="CA",
                postal_code="94105",
                country="US",
                currency="USD",
            )
            for c in customers
        )
        Subscription.objects.bulk_create(
            Subscription(
                customer=c,
                package=package,
                price=price,
                interval="month",
                currency="USD",
                flat_amount_minor=19_900,
                seat_amount_minor=1_500,
                included_seats=5,
                seats=5 + (c.pk % 20),
                current_period_start=start,
                current_period_end=end,
            )
            for c in customers
        )
    print(f"created {n} customers + profiles + subscriptions in {time.perf_counter() - t0:.1f}s")

    # --- phase 1: drafting (the billing run's current-period drafting, keyset chunks) -----------------------------
    as_of = datetime(2026, 10, 15, tzinfo=UTC)
    rss = [rss_mb()]
    t0 = time.perf_counter()
    drafted = 0
    last_id = 0
    while True:
        ids = list(_unbilled(as_of).filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[: args.chunk])
        if not ids:
            break
        drafted += len(draft_chunk(subscription_ids=ids))
        last_id = ids[-1]
        if drafted % 10_000 < args.chunk:
            rss.append(rss_mb())
    elapsed = time.perf_counter() - t0
    rss.append(rss_mb())
    print(f"drafted {drafted} invoices in {elapsed:.1f}s = {drafted / elapsed:,.0f} invoices/s (one process)")
    print(
        f"RSS MB at start / every ~10k / end: {', '.join(f'{r:.0f}' for r in rss)} (max-min {max(rss) - min(rss):.0f})"
    )
    t0 = time.perf_counter()
    rerun = sum(
        len(draft_chunk(subscription_ids=list(ids)))
        for ids in [list(Subscription.objects.order_by("pk").values_list("pk", flat=True)[: args.chunk])]
    )
    print(f"re-run of one chunk drafted {rerun} (idempotent) in {time.perf_counter() - t0:.2f}s")

    # --- phase 2: renewal through subscriptions' subscription_renew + drafting of the new period ---------------------
    renew_as_of = datetime(2026, 11, 1, 1, tzinfo=UTC)
    ids = list(Subscription.objects.order_by("pk").values_list("pk", flat=True)[: args.renewals])
    t0 = time.perf_counter()
    renewed = created = 0
    for offset in range(0, len(ids), args.chunk):
        count, new = renew_chunk(subscription_ids=ids[offset : offset + args.chunk], as_of=renew_as_of)
        renewed += count
        created += len(new)
    elapsed = time.perf_counter() - t0
    print(f"renewed {renewed} and drafted {created} in {elapsed:.1f}s = {renewed / elapsed:,.0f} renewals/s")

    # --- phase 3: PDF render latency -------------------------------------------------------------------------------
    staff = User.objects.create(email="bench@continuum.test", is_staff=True)
    invoices = list(Invoice.objects.filter(status="draft").order_by("pk")[: args.pdfs])
    timings = []
    for invoice in invoices:
        invoice = invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)
        t0 = time.perf_counter()
        html_to_pdf(invoice_render_html(invoice=invoice))
        timings.append((time.perf_counter() - t0) * 1000)
    print(
        f"PDF render ({len(timings)} invoices): first {timings[0]:.0f} ms, median {statistics.median(timings):.0f} ms, "
        f"p95 {percentile(timings, 95):.0f} ms (target < 300 ms)"
    )


if __name__ == "__main__":
    main()
