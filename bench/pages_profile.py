"""In-process page costs (issue 18): median CPU per request of each customer page and of the bare page, with the
Django test client on a seeded demo, and optionally a cProfile of one page.

    .venv/bin/python bench/pages_profile.py [--requests 30] [--profile dashboard] [--reuse]

The CPU median is what to compare while the machine is shared (wall-clock throughput is bench/pages.py's job).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "var" / "bench-pages-profile.sqlite3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--profile", help="page name to cProfile")
    parser.add_argument("--reuse", action="store_true", help="keep the seeded database of a previous run")
    parser.add_argument("--only", help="comma-separated page names")
    args = parser.parse_args()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.pages_settings",
            "DATABASE_URL": f"sqlite:///{DB}",
            "DJANGO_DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "CELERY_TASK_ALWAYS_EAGER": "1",
        }
    )
    os.environ.pop("DJANGO_ENV", None)
    sys.path.insert(0, str(ROOT))
    if not (args.reuse and DB.exists()):
        DB.parent.mkdir(exist_ok=True)
        DB.unlink(missing_ok=True)
        for cmd in (["migrate", "--noinput"], ["seed_demo"]):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)

    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from billing.models import Invoice
    from subscriptions.models import Customer, User

    user = User.objects.get(email="owner@acme.test")
    customer = Customer.objects.get(memberships__user=user)
    invoice = Invoice.objects.filter(customer=customer, number__isnull=False).order_by("-pk").first()
    backend = next(b for b in settings.AUTHENTICATION_BACKENDS if b.endswith("ModelBackend"))
    client = Client(HTTP_HX_REQUEST="true")
    client.force_login(user, backend=backend)
    c = customer.pk
    pages = [
        ("bare", "/bench/bare/"),
        ("dashboard", f"/c/{c}/"),
        ("package", f"/c/{c}/package/"),
        ("seats", f"/c/{c}/seats/"),
        ("invoices", f"/c/{c}/invoices/"),
        ("invoice detail", f"/c/{c}/invoices/{invoice.pk}/"),
        ("tax exemption", f"/c/{c}/tax/"),
        ("activity", f"/c/{c}/activity/"),
        ("seat preview (htmx)", f"/c/{c}/changes/seats/preview/?seats=12"),
    ]
    if args.only:
        wanted = {n.strip() for n in args.only.split(",")} | {"bare"}
        pages = [p for p in pages if p[0] in wanted]
    floor = None
    for name, path in pages:
        for _ in range(3):
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
        times = []
        for _ in range(args.requests):
            start = time.process_time()
            client.get(path)
            times.append((time.process_time() - start) * 1000)
        median = statistics.median(times)
        floor = floor or median
        print(f"{name:<22}{median:>8.1f} ms CPU  ({median / floor:.1f}× bare; bare÷page {floor / median:.2f})")
        if args.profile == name:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.requests):
                client.get(path)
            profiler.disable()
            stats = pstats.Stats(profiler).sort_stats("cumulative")
            stats.print_stats(45)


if __name__ == "__main__":
    main()
