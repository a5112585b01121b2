"""`manage.py simulate_year`: drive the real services through a simulated year and check every invariant.

    manage.py simulate_year [--customers 1000] [--months 12] [--start YYYY-MM-DD] [--seed 1] [--out var/simulation]
        [--card-customers N] [--localstripe URL] [--rebill-rate 0.002]

--start defaults to 15 June of next year. Run it on an empty database (it refuses one that has customers: the
invariants read the whole database). Exits non-zero when an invariant is violated. docs/simulation.md describes the
mix, the rates and the clerk's rules. Card customers pay through the real Stripe path against localstripe, which the
command starts on 127.0.0.1 (or `--localstripe URL`); when it cannot, the command stops and says so (`--card-customers
0` runs without cards).
"""

import random
from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings

from portal.simulation import invariants, report
from portal.simulation.cards import CARD_SHARE, CardDesk, LocalStripeUnavailable, localstripe_start, stripe_settings
from portal.simulation.clerk import WRONG_DETAILS_RATE
from portal.simulation.extensions import extension_figures, extension_violations, extensions_for
from portal.simulation.world import customers_generate, world_build
from portal.simulation.year import Simulation, sim_dates
from subscriptions import clock
from subscriptions.models import Customer


def default_start(today: date | None = None) -> date:
    """15 June of the year after today's: a start that is never in the past, and whose first months cross month ends of
    30 and 31 days (June, July, August). The simulation pins its own clock from there, so it never reads today's."""
    return date((today or clock.today()).year + 1, 6, 15)


class Command(BaseCommand):
    help = "Simulate months of a customer base through the real services, then check the invariants."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=1000)
        parser.add_argument("--months", type=int, default=12)
        parser.add_argument(
            "--start", type=date.fromisoformat, default=None, help="first simulated day (default: 15 June next year)"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--pdfs", action="store_true", help="render every PDF with WeasyPrint (slow)")
        parser.add_argument("--out", type=Path, default=Path(settings.VAR_DIR) / "simulation")
        parser.add_argument(
            "--card-customers", type=int, default=None, help=f"customers paying by card (default {CARD_SHARE:.0%})"
        )
        parser.add_argument("--localstripe", default="", help="URL of a running localstripe (default: start one)")
        parser.add_argument(
            "--rebill-rate",
            type=float,
            default=WRONG_DETAILS_RATE,
            help="share of issued invoices whose customer reports wrong details (void and re-bill)",
        )

    def handle(
        self, *args, customers, months, start, seed, out, pdfs, card_customers, localstripe, rebill_rate, **options
    ):
        if Customer.objects.exists():
            raise CommandError("simulate_year needs an empty database (the invariants read all of it).")
        begin, end = sim_dates(start or default_start(), months)
        world = world_build()
        mix = customers_generate(
            rng=random.Random(seed), count=customers, signup_days=max(1, min(62, (end - begin).days // 2))
        )
        simulation = Simulation(
            customers=mix,
            start=begin,
            end=end,
            seed=seed,
            clerk=world["clerk"],
            render_pdfs=pdfs,
            extensions=extensions_for(seed),
        )
        simulation.rebills.rate = rebill_rate
        simulation.progress = lambda line: (self.stderr.write(line), self.stderr.flush())
        card_customers = round(customers * CARD_SHARE) if card_customers is None else card_customers
        server = None
        if card_customers > 0:
            try:
                server = localstripe_start(localstripe)
            except LocalStripeUnavailable as error:
                raise CommandError(
                    f"{card_customers} card customers need localstripe, which is unavailable: {error}. "
                    "Install it (requirements-dev.txt), pass --localstripe URL, or run with --card-customers 0."
                ) from error
            simulation.cards = CardDesk(simulation, server=server, card_customers=card_customers)
        try:
            with override_settings(**(stripe_settings(server) if server else {"STRIPE_SECRET_KEY": ""})):
                stats = simulation.run()
                violations = invariants.check_all(issued_snapshots=simulation.issued_snapshots, stripe=server)
                violations += extension_violations(simulation)
        finally:
            if server is not None:
                server.stop()
        figures = report.figures(stats=stats, violations=violations, customers=customers, start=begin, end=end)
        figures.update(extension_figures(simulation))
        figures["cards"] = simulation.cards.summary() if simulation.cards else {"customers": 0}
        text_path, html_path = report.write(figures, out)
        self.stdout.write(report.text(figures))
        self.stdout.write(f"report: {text_path} and {html_path}")
        self.figures = figures
        self.simulation = simulation
        if violations:
            raise CommandError(f"{len(violations)} invariant violation(s)")
