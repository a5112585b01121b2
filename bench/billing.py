"""Billing benchmark (issue 6): the real billing run over many subscriptions, and invoice PDF render latency.

    .venv/bin/python bench/billing.py [--subscriptions 100000] [--pdfs 60] [--finalize 20000] [--finalize-single 500]
                                     [--einvoices 30] [--keep]

DATABASE_URL defaults to postgres://continuum:continuum@127.0.0.1:5432/continuum_bench_perf (created if missing;
every table is flushed first; dropped at the end unless --keep) — scripts/services-up starts PostgreSQL. One process,
no Celery worker (tasks queued on commit go to BENCH_BROKER_URL, default Redis db 9, flushed at the end): the figures
are per worker process. Targets: the billing run drafts > 1,000 invoices per second per process with flat memory;
PDF render p95 < 300 ms in a warm worker (and, for reference, as a multiple of 3 in-process requests of
bench/pages.py's bare page, measured interleaved with the renders; the target against 3 bare-page requests is
judged by `bench/pages.py --pdfs`, against the page as served); a Factur-X e-invoice adds < 150 ms at p95
to it (`--einvoices`).
Figures are recorded in docs/performance.md ("Billing").

What runs is exactly what the hourly beat task and `manage.py billing_run --as-of` run:
`billing.services.billing_run.billing_run(as_of=..., finalize=False)` — first as of 15 Oct (drafts the October
invoice of every subscription: the "new subscriptions" path), then as of 1 Nov 01:00 (renews every subscription,
applying scheduled changes and ending canceled ones, and drafts the November invoices) — then the same run again
(must create nothing). The mix: every subscription has additional seats; 10 % have an add-on; 1 % have a scheduled
seat decrease; 0.5 % are set to cancel at the period end; 1 % have a pending invoice item.
"""

import argparse
import cProfile
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://continuum:continuum@127.0.0.1:5432/continuum_bench_perf"
os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
# A Redis database of its own (tasks queued on commit land there; flushed at the end), never the shared broker.
os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ["CELERY_TASK_ALWAYS_EAGER"] = "0"
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.setdefault("PRIVATE_STORAGE_ROOT", str(ROOT / "var" / "bench-private"))


def _admin_dsn() -> tuple[str, str]:
    base, name = os.environ["DATABASE_URL"].rsplit("/", 1)
    return f"{base}/postgres", name


def ensure_database() -> None:
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        return
    import psycopg

    admin, name = _admin_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def drop_database() -> None:
    if not os.environ["DATABASE_URL"].startswith("postgres"):
        return
    import psycopg
    from django.db import connections

    connections.close_all()
    admin, name = _admin_dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    print(f"dropped database {name}")


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


class RssSampler:
    """Samples this process's resident memory every `interval` seconds while a phase runs."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.samples, self._stop = interval, [], threading.Event()

    def __enter__(self):
        self.samples.append(rss_mb())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.samples.append(rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb())

    def summary(self, points: int = 10) -> str:
        picked = [self.samples[round(i * (len(self.samples) - 1) / (points - 1))] for i in range(points)]
        return (
            f"RSS MB {', '.join(f'{r:.0f}' for r in picked)} "
            f"(min {min(self.samples):.0f}, max {max(self.samples):.0f}, {len(self.samples)} samples)"
        )


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def seed(n: int) -> None:
    from datetime import UTC, datetime

    from billing.models import BillingProfile, PendingInvoiceItem, TaxRate
    from subscriptions.models import (
        Customer,
        Package,
        PackageComponent,
        Price,
        ScheduledChange,
        ScheduledChangeKind,
        Sku,
        Subscription,
        SubscriptionAddon,
    )

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
    sso = Package.objects.create(slug="sso", name="SSO add-on", is_addon=True, intervals=["month"])
    PackageComponent.objects.create(
        package=sso, sku=Sku.objects.create(code="ADDON-SSO-M", name="SSO", kind="recurring_flat")
    )
    sso_price = Price.objects.create(package=sso, currency="USD", interval="month", flat_amount_minor=4_900)
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
        subscriptions = Subscription.objects.bulk_create(
            Subscription(
                customer=c,
                package=package,
                price=price,
                interval="month",
                currency="USD",
                flat_amount_minor=19_900,
                seat_amount_minor=1_500,
                included_seats=5,
                seats=6 + (offset + i) % 20,
                current_period_start=start,
                billing_anchor=start,
                current_period_end=end,
                cancel_at_period_end=(offset + i) % 200 == 7,
            )
            for i, c in enumerate(customers)
        )
        SubscriptionAddon.objects.bulk_create(
            SubscriptionAddon(subscription=s, package=sso, price=sso_price, flat_amount_minor=4_900, started_at=start)
            for i, s in enumerate(subscriptions)
            if (offset + i) % 10 == 3
        )
        ScheduledChange.objects.bulk_create(
            ScheduledChange(
                subscription=s, kind=ScheduledChangeKind.SEATS, payload={"seats": s.seats - 1}, effective_at=end
            )
            for i, s in enumerate(subscriptions)
            if (offset + i) % 100 == 5
        )
        PendingInvoiceItem.objects.bulk_create(
            PendingInvoiceItem(
                customer_id=s.customer_id,
                subscription=s,
                description="2 more seats, prorated",
                quantity=2,
                unit_amount_minor=750,
                amount_minor=1_500,
                currency="USD",
            )
            for i, s in enumerate(subscriptions)
            if (offset + i) % 100 == 9
        )
    print(f"seeded {n:,} customers + profiles + subscriptions in {time.perf_counter() - t0:.1f}s")


def timed_run(label: str, as_of, chunk: int, profile: str | None = None):
    from billing.services.billing_run import billing_run

    load = load_average()
    profiler = None
    if profile:
        profiler = cProfile.Profile()
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        result = billing_run(as_of=as_of, chunk_size=chunk, finalize=False)
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - t0
    if profiler:
        profiler.dump_stats(profile)
    rate = result.drafted / elapsed if elapsed else 0
    print(
        f"{label}: renewed {result.renewed:,}, drafted {result.drafted:,} invoices in {elapsed:.1f}s = "
        f"{rate:,.0f} invoices/s, {result.renewed / elapsed:,.0f} renewals/s (one process; load average before: {load})"
    )
    print(f"  {sampler.summary()}")
    return result, elapsed


class _Rollback(Exception):
    pass


def renew_draft_floor(*, period_start, chunk: int) -> tuple[int, float]:
    """The floor of the renew + draft run (issue 18): write the rows that run wrote — each subscription's new period,
    one invoice, its lines and one audit row per subscription — through the same bulk path (`subscriptions.bulk`), in
    chunks of the same size, with no business logic: the rows are copies of what the run just wrote (invoices moved
    a period on, so the one-regular-invoice-per-period constraint holds). Everything is rolled back. Returns
    (invoices written, seconds)."""
    from django.db import transaction

    from billing.models import Invoice, InvoiceKind, InvoiceLine
    from subscriptions.bulk import bulk_insert, bulk_update
    from subscriptions.models import AuditEvent, Subscription

    ids = list(
        Invoice.objects.filter(kind=InvoiceKind.REGULAR, period_start=period_start)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    audit_ids = list(
        AuditEvent.objects.filter(action="subscription.renewed").order_by("pk").values_list("pk", flat=True)
    )
    written = 0
    t0 = time.perf_counter()
    try:
        with transaction.atomic():
            for start in range(0, len(ids), chunk):
                part = ids[start : start + chunk]
                invoices = list(Invoice.objects.filter(pk__in=part).order_by("pk"))
                lines = list(InvoiceLine.objects.filter(invoice_id__in=part).order_by("pk"))
                subscriptions = list(
                    Subscription.objects.filter(pk__in=[i.subscription_id for i in invoices]).only(
                        "pk", "current_period_start", "current_period_end"
                    )
                )
                audits = list(AuditEvent.objects.filter(pk__in=audit_ids[start : start + chunk]))
                bulk_update(Subscription, subscriptions, ["current_period_start", "current_period_end"])
                old_ids = [invoice.pk for invoice in invoices]
                for invoice in invoices:
                    length = invoice.period_end - invoice.period_start
                    invoice.pk = None
                    invoice._state.adding = True
                    invoice.period_start, invoice.period_end = invoice.period_end, invoice.period_end + length
                bulk_insert(Invoice, invoices, returning=True)
                new_id = {old: invoice.pk for old, invoice in zip(old_ids, invoices, strict=True)}
                for line in lines:
                    line.pk = None
                    line._state.adding = True
                    line.invoice_id = new_id[line.invoice_id]
                bulk_insert(InvoiceLine, lines)
                for audit in audits:
                    audit.pk = None
                    audit._state.adding = True
                bulk_insert(AuditEvent, audits)
                written += len(invoices)
            elapsed = time.perf_counter() - t0
            raise _Rollback
    except _Rollback:
        pass
    return written, elapsed


def finalize_floor(*, invoice_ids: list[int], chunk: int) -> float:
    """The floor of the set-based finalize (issue 18): the statements `invoices_finalize_batch` writes per chunk —
    the lines' tax rates, the tax lines, the invoices' issue fields, one status-change and one audit row per
    invoice — through the same bulk path, with the values the finalize just wrote (copied back onto themselves; the
    tax, status and audit rows inserted again), no checks, no numbering lock. Rolled back. Returns seconds."""
    from django.db import transaction

    from billing.models import Invoice, InvoiceLine, InvoiceStatusChange, InvoiceTaxLine
    from billing.services.invoices.issue import _FINALIZE_FIELDS
    from subscriptions.bulk import bulk_insert, bulk_update
    from subscriptions.models import AuditEvent

    def fresh(rows):
        for row in rows:
            row.pk = None
            row._state.adding = True
        return rows

    t0 = time.perf_counter()
    try:
        with transaction.atomic():
            for start in range(0, len(invoice_ids), chunk):
                part = invoice_ids[start : start + chunk]
                invoices = list(Invoice.objects.filter(pk__in=part).order_by("pk"))
                lines = list(InvoiceLine.objects.filter(invoice_id__in=part).only("pk", "tax_rate", "tax_name"))
                tax_lines = fresh(list(InvoiceTaxLine.objects.filter(invoice_id__in=part)))
                status_rows = fresh(list(InvoiceStatusChange.objects.filter(invoice_id__in=part)[: len(part)]))
                audit_rows = fresh(list(AuditEvent.objects.order_by("-pk")[: len(part)]))
                bulk_update(InvoiceLine, lines, ["tax_rate", "tax_name"])
                bulk_insert(InvoiceTaxLine, tax_lines)
                bulk_update(Invoice, invoices, _FINALIZE_FIELDS)
                bulk_insert(InvoiceStatusChange, status_rows)
                bulk_insert(AuditEvent, audit_rows)
            elapsed = time.perf_counter() - t0
            raise _Rollback
    except _Rollback:
        pass
    return elapsed


def bench_einvoices(count: int) -> None:
    """What a Factur-X e-invoice adds to the warm PDF render (target p95 < 150 ms), on issued bench invoices made
    EU business invoices in memory (reverse charge, German buyer; nothing is saved): for each, the plain render, the
    PDF/A-3b render, and building + validating (XSD, EN 16931 Schematron) + embedding the XML; plus the pre-issue
    check (build + validate) the finalize path adds. The Schematron XSLT is compiled once, by the first (cold) one."""
    from django.conf import settings

    from billing import einvoice
    from billing.models import Invoice
    from billing.services.documents import html_to_pdf, invoice_render_html
    from billing.services.einvoices import invoice_einvoice_problems

    invoices = list(Invoice.objects.filter(issued_at__isnull=False).order_by("pk")[:count])
    if not invoices:
        print("e-invoices: no issued invoice to render (run with --pdfs or --finalize-single)")
        return
    added, added_cpu, checks, failures = [], [], [], 0
    load = load_average()
    for invoice in invoices:
        invoice.e_invoice = True
        invoice.seller_details = dict(settings.SELLER)
        invoice.billing_country, invoice.customer_tax_ids = "DE", ["DE136695976"]
        invoice.buyer_details = {"line1": "Friedrichstraße 100", "city": "Berlin", "postal_code": "10117"}
        invoice.buyer_details["country"] = "DE"
        invoice.reverse_charge, invoice.reverse_charge_wording = True, "Reverse charge (Article 196)."
        invoice.tax_minor, invoice.total_minor = 0, invoice.subtotal_minor
        lines = list(invoice.lines.all())
        for line in lines:
            line.tax_rate = 0
        html = invoice_render_html(invoice=invoice)
        t0, c0 = time.perf_counter(), time.process_time()
        html_to_pdf(html)
        t1, c1 = time.perf_counter(), time.process_time()
        pdfa = html_to_pdf(html, pdf_variant="pdf/a-3b")
        t2, c2 = time.perf_counter(), time.process_time()
        # what billing.services.einvoices.invoice_einvoice_pdf does, on the in-memory rows
        document = einvoice.invoice_document(invoice=invoice, lines=lines, tax_lines=[])
        xml = einvoice.build_xml(document)
        result = einvoice.validate_xml(xml)
        einvoice.embed_in_pdf(pdf=pdfa, xml=xml, document=document)
        t3, c3 = time.perf_counter(), time.process_time()
        problems = invoice_einvoice_problems(
            invoice=invoice, lines=lines, tax_lines=[], profile=None, now=invoice.issued_at
        )
        t4 = time.perf_counter()
        if not result.valid or problems:
            failures += 1
            print(f"  {invoice.number}: {result.failed or result.xsd_errors or problems}")
        added.append(((t2 - t1) - (t1 - t0) + (t3 - t2)) * 1000)
        added_cpu.append(((c2 - c1) - (c1 - c0) + (c3 - c2)) * 1000)
        checks.append((t4 - t3) * 1000)
    warm, warm_checks, warm_cpu = added[1:] or added, checks[1:] or checks, added_cpu[1:] or added_cpu
    print(
        f"e-invoice added to the render: cold (compiles the Schematron) {added[0]:.0f} ms; warm ({len(warm)}) "
        f"p50 {statistics.median(warm):.0f} ms, p95 {percentile(warm, 95):.0f} ms (target p95 < 150 ms); "
        f"pre-issue check p50 {statistics.median(warm_checks):.0f} ms, p95 {percentile(warm_checks, 95):.0f} ms; "
        f"{failures} failed validations (load average before: {load})"
    )
    print(
        f"  CPU time of this process for the e-invoice part: warm p50 {statistics.median(warm_cpu):.0f} ms, "
        f"p95 {percentile(warm_cpu, 95):.0f} ms"
    )


def bare_page_client(user_model):
    """An in-process signed-in client for bench/pages.py's bare page (`/bench/bare/`: session + user, 2 queries, a
    small template) on this process's settings and database: the unit the warm PDF render is compared with."""
    from django.conf import settings
    from django.test import Client
    from django.test.utils import override_settings

    override_settings(ROOT_URLCONF="bench.pages_urls", ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"]).enable()
    user = user_model.objects.create(email="bare@continuum.test")
    client = Client()
    client.force_login(user, backend=next(b for b in settings.AUTHENTICATION_BACKENDS if b.endswith("ModelBackend")))
    for _ in range(5):  # warm: URL resolver, template, session backend
        response = client.get("/bench/bare/")
        assert response.status_code == 200 and b"Hello bare@continuum.test" in response.content, response
    return client


def time_bare(client, count: int, wall: list, cpu: list) -> None:
    for _ in range(count):
        t0, c0 = time.perf_counter(), time.process_time()
        client.get("/bench/bare/")
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--pdfs", type=int, default=60, help="invoices issued and rendered (the first is the cold one)")
    parser.add_argument(
        "--finalize", type=int, default=20_000, help="drafts checked and issued set-based (the billing run's path)"
    )
    parser.add_argument(
        "--finalize-single", type=int, default=500, help="drafts checked and issued one by one (invoice_finalize)"
    )
    parser.add_argument(
        "--einvoices",
        type=int,
        default=30,
        help="issued invoices rendered again as Factur-X e-invoices (the first is the cold one): what the e-invoice "
        "adds to the warm render (PDF/A-3b, XML, XSD + Schematron, embedding); small sizes are fine",
    )
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument(
        "--profile",
        help="write cProfiles of the two runs and the set-based finalize to PROFILE.draft, .renew, .finalize",
    )
    parser.add_argument("--keep", action="store_true", help="do not drop the bench database at the end")
    args = parser.parse_args()

    ensure_database()
    import django

    django.setup()
    from portal.celery import app as celery_app

    celery_app.loader.import_default_modules()  # register the tasks, as a worker does, so on-commit hand-offs find them
    from datetime import UTC, datetime

    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.models import Invoice, InvoiceKind
    from billing.services.billing_run import finalize_drafts
    from billing.services.documents import invoice_render_pdf
    from billing.services.invoices import invoice_approve_and_issue, invoice_finalize
    from subscriptions.models import AuditEvent, Subscription, SubscriptionStatus, User

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0)
    print(f"database: {connection.vendor} {connection.settings_dict['NAME']}; {os.cpu_count()} CPUs")
    n = args.subscriptions
    seed(n)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")

    # --- 1: the run as of 15 Oct drafts the current (October) period of every subscription -------------------------
    first, _ = timed_run(
        "billing run as of 2026-10-15 (draft current periods)",
        datetime(2026, 10, 15, tzinfo=UTC),
        args.chunk,
        args.profile and f"{args.profile}.draft",
    )
    assert first.drafted == n, first
    # Bench data set-up, not the product path: treat October as issued (numbered, open) so the customers are
    # established and November's drafts can pass the pre-issue checks in step 4 (one UPDATE).
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE billing_invoice SET status = 'open', series = 'BENCH', number = 'BENCH-' || id, "
            "issued_at = period_start, checks_run_at = period_start WHERE period_start = %s",
            [datetime(2026, 10, 1, tzinfo=UTC)],
        )

    # --- 2: the run as of 1 Nov renews every subscription and drafts November (the headline) -----------------------
    as_of = datetime(2026, 11, 1, 1, tzinfo=UTC)
    label = "billing run as of 2026-11-01 01:00 (renew + draft)"
    second, second_elapsed = timed_run(label, as_of, args.chunk, args.profile and f"{args.profile}.renew")
    canceled = Subscription.objects.filter(status=SubscriptionStatus.ENDED).count()
    renewed = Subscription.objects.filter(current_period_start=datetime(2026, 11, 1, tzinfo=UTC)).count()
    print(
        f"  {renewed:,} subscriptions now in November, {canceled:,} ended (canceled at period end), "
        f"{AuditEvent.objects.filter(action='subscription.renewed').count():,} renewal audit rows"
    )
    assert second.drafted == n - canceled and renewed == n - canceled, second
    floor_written, floor_seconds = renew_draft_floor(period_start=datetime(2026, 11, 1, tzinfo=UTC), chunk=args.chunk)
    run_seconds = second_elapsed
    print(
        f"  floor (the same rows through the same bulk path, no business logic, rolled back): {floor_written:,} "
        f"invoices in {floor_seconds:.1f}s = {floor_written / floor_seconds:,.0f}/s; renew + draft = "
        f"{run_seconds / floor_seconds:.2f}× its floor (target ≤ 3×)"
    )

    # --- 3: the same run again bills nothing ---------------------------------------------------------------------
    t0 = time.perf_counter()
    from billing.services.billing_run import billing_run

    again = billing_run(as_of=as_of, chunk_size=args.chunk, finalize=False)
    regular = Invoice.objects.filter(kind=InvoiceKind.REGULAR).count()
    print(
        f"re-run as of 2026-11-01 01:00: renewed {again.renewed}, drafted {again.drafted} in "
        f"{time.perf_counter() - t0:.2f}s; regular invoices {regular:,}"
    )
    assert (again.renewed, again.drafted) == (0, 0)

    # --- 4: pre-issue checks + issue (finalize): one by one on a sample, then set-based on the rest ----------------
    november = datetime(2026, 11, 1, tzinfo=UTC)
    if args.finalize_single:
        ids = list(
            Invoice.objects.filter(status="draft", period_start=november)
            .order_by("pk")
            .values_list("pk", flat=True)[: args.finalize_single]
        )
        t0 = time.perf_counter()
        outcomes = [invoice_finalize(invoice_id=invoice_id).status for invoice_id in ids]
        elapsed = time.perf_counter() - t0
        print(
            f"finalize one by one (invoice_finalize) of {len(ids):,} drafts: {outcomes.count('open')} issued, "
            f"{outcomes.count('held')} held in {elapsed:.1f}s = {len(ids) / elapsed:,.0f}/s (load {load_average()})"
        )
    if args.finalize:
        ids = list(
            Invoice.objects.filter(status="draft", period_start=november)
            .order_by("pk")
            .values_list("pk", flat=True)[: args.finalize]
        )
        with CaptureQueriesContext(connection) as one_chunk:
            finalize_drafts(invoice_ids=ids[: args.chunk], chunk_size=args.chunk)
        rest = ids[args.chunk :]  # the first chunk above was the query count's
        profiler = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        if profiler:
            profiler.enable()
        issued, held, _ = finalize_drafts(invoice_ids=rest, chunk_size=args.chunk)
        elapsed = max(time.perf_counter() - t0, 1e-9)
        if profiler:
            profiler.disable()
            profiler.dump_stats(f"{args.profile}.finalize")
        print(
            f"finalize set-based (billing run: finalize_drafts, chunks of {args.chunk}) of {len(rest):,} "
            f"drafts: {issued:,} issued, {held:,} held in {elapsed:.1f}s = {len(rest) / elapsed:,.0f}/s "
            f"(load {load_average()}); {len(one_chunk.captured_queries)} queries for one chunk of "
            f"{min(args.chunk, len(ids))}"
        )
        if rest:
            floor_seconds = finalize_floor(invoice_ids=rest, chunk=args.chunk)
            print(
                f"  floor (the same statements through the same bulk path, no checks or numbering, rolled back): "
                f"{len(rest) / floor_seconds:,.0f}/s; set-based finalize = {elapsed / floor_seconds:.2f}× its floor "
                f"(target ≤ 4×)"
            )

    # --- 5: PDF render latency, through the task's service (render + store) --------------------------------------
    if args.pdfs:
        staff = User.objects.create(email="bench@continuum.test", is_staff=True)
        # Drafts left over are issued first; when --finalize covered every draft there are none, so already issued
        # invoices are rendered instead (the render is the same; only the issue step is skipped).
        invoices = list(Invoice.objects.filter(status__in=["draft", "held"]).order_by("pk")[: args.pdfs])
        if len(invoices) < args.pdfs:
            invoices += list(
                Invoice.objects.filter(status="open", period_start=november).order_by("pk")[: args.pdfs - len(invoices)]
            )
        load = load_average()
        bare = bare_page_client(User)
        timings, cpu, bare_wall, bare_cpu = [], [], [], []
        for invoice in invoices:
            if invoice.status in ("draft", "held"):
                invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)
            t0, c0 = time.perf_counter(), time.process_time()
            invoice_render_pdf(invoice_id=invoice.pk)  # what the after-issue task runs: render, store, checksum
            timings.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            time_bare(bare, 10, bare_wall, bare_cpu)  # interleaved, so both see the same machine load
        if len(timings) < 2:
            sys.exit(f"PDF step: {len(timings)} invoice(s) to render; need at least 2 (one cold, one warm)")
        warm, warm_cpu = timings[1:], cpu[1:]
        print(
            f"PDF render + store: cold (first in process, includes importing WeasyPrint) {timings[0]:.0f} ms; "
            f"warm ({len(warm)} invoices) p50 {statistics.median(warm):.0f} ms, p95 {percentile(warm, 95):.0f} ms, "
            f"max {max(warm):.0f} ms (target p95 < 300 ms; load average before: {load})"
        )
        print(
            f"  CPU time of this process per render (excludes waiting for a CPU on a busy machine): cold "
            f"{cpu[0]:.0f} ms; warm p50 {statistics.median(warm_cpu):.0f} ms, p95 {percentile(warm_cpu, 95):.0f} ms"
        )
        three, three_cpu = 3 * statistics.median(bare_wall), 3 * statistics.median(bare_cpu)
        print(
            f"  3 bare-page requests (bench/pages.py's /bench/bare/, in-process Django client, {len(bare_wall)} "
            f"requests interleaved with the renders): 3 × p50 = {three:.1f} ms wall, {three_cpu:.1f} ms CPU; warm "
            f"PDF p95 = {percentile(warm, 95) / three:.1f}× that (wall), {percentile(warm_cpu, 95) / three_cpu:.1f}× "
            f"(CPU): a request's bare in-process cost, for reference; the target (p95 < 3 bare-page requests) is "
            f"judged by bench/pages.py --pdfs against the bare page's latency as served (docs/performance.md)"
        )
    if args.einvoices:
        bench_einvoices(args.einvoices)
    print(f"peak RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")

    if connection.vendor == "postgresql" and not args.keep:
        drop_database()
    try:
        import redis

        redis.Redis.from_url(os.environ["CELERY_BROKER_URL"]).flushdb()
    except Exception:  # the broker is optional for the figures
        pass


if __name__ == "__main__":
    main()
