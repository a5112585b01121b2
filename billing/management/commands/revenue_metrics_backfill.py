"""`manage.py revenue_metrics_backfill --months N [--until YYYY-MM-DD]`: recompute the stored revenue-metric
aggregates of the last N months (oldest first; each month on its own, so it is safe to run again)."""

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from billing.services import revenue_metrics


class Command(BaseCommand):
    help = "Recompute the revenue metrics (MRR, movements, retention, cohorts, billing quality) of the last N months."

    def add_arguments(self, parser):
        parser.add_argument("--months", type=int, default=14, help="How many months, ending with --until's (14).")
        parser.add_argument("--until", help="YYYY-MM-DD: a day in the last month to compute (default: today, UTC).")

    def handle(self, *args, **options):
        months = options["months"]
        if months < 1 or months > 240:
            raise CommandError("--months must be between 1 and 240.")
        until = None
        if options["until"]:
            try:
                until = date.fromisoformat(options["until"])
            except ValueError:
                raise CommandError("--until must be YYYY-MM-DD.")
        done = revenue_metrics.revenue_months_backfill(months=months, until=until)
        self.stdout.write(
            self.style.SUCCESS(
                f"Revenue metrics recomputed for {len(done)} months: {done[0]:%Y-%m} to {done[-1]:%Y-%m}."
            )
        )
