"""`manage.py billing_run [--as-of YYYY-MM-DD]`: run the billing run by hand (tests and the demo use it to simulate
time). Idempotent: running it twice for the same date creates nothing new."""

from django.core.management.base import BaseCommand, CommandError

from billing.services.billing_run import billing_run
from subscriptions import clock


class Command(BaseCommand):
    help = "Renew subscriptions whose period has ended and draft/issue their invoices, as of a date (default: now)."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="YYYY-MM-DD (start of that day, UTC) or an ISO 8601 datetime.")
        parser.add_argument("--no-finalize", action="store_true", help="Draft only; do not run checks or issue.")
        parser.add_argument("--chunk-size", type=int, default=500)

    def handle(self, *args, **options):
        as_of = None
        if options["as_of"]:
            try:
                as_of = clock.as_utc(options["as_of"])
            except ValueError:
                raise CommandError("--as-of must be YYYY-MM-DD or an ISO 8601 datetime.")
        result = billing_run(as_of=as_of, chunk_size=options["chunk_size"], finalize=not options["no_finalize"])
        self.stdout.write(
            self.style.SUCCESS(
                f"Billing run as of {result.as_of}: {result.renewed} renewed, {result.drafted} drafted, "
                f"{result.issued} issued, {result.held} held."
            )
        )
