"""`manage.py check_catalog`: validate the whole catalog; exits non-zero and lists every problem when invalid."""

from django.core.management.base import BaseCommand, CommandError

from subscriptions.services.catalog import catalog_validate


class Command(BaseCommand):
    help = "Check that every package can be sold: components, prices per enabled currency and interval, seat limits."

    def handle(self, *args, **options):
        problems = catalog_validate()
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            raise CommandError(f"The catalog has {len(problems)} problem{'s' if len(problems) != 1 else ''}.")
        self.stdout.write(self.style.SUCCESS("The catalog is valid."))
