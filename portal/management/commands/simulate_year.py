"""`manage.py simulate_year`: drive the real services through a simulated year and check every invariant.

    manage.py simulate_year [--customers 1000] [--months 12] [--start 2027-06-15] [--seed 1] [--out var/simulation]

Run it on an empty database (it refuses one that has customers: the invariants read the whole database). Exits
non-zero when an invariant is violated. docs/simulation.md describes the mix, the rates and the clerk's rules.
"""

import random
from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.simulation import invariants, report
from portal.simulation.extensions import extension_figures, extension_violations, extensions_for
from portal.simulation.world import customers_generate, world_build
from portal.simulation.year import Simulation, sim_dates
from subscriptions.models import Customer


class Command(BaseCommand):
    help = "Simulate months of a customer base through the real services, then check the invariants."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=1000)
        parser.add_argument("--months", type=int, default=12)
        parser.add_argument("--start", type=date.fromisoformat, default=date(2027, 6, 15))
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--pdfs", action="store_true", help="render every PDF with WeasyPrint (slow)")
        parser.add_argument("--out", type=Path, default=Path(settings.VAR_DIR) / "simulation")

    def handle(self, *args, customers, months, start, seed, out, pdfs, **options):
        if Customer.objects.exists():
            raise CommandError("simulate_year needs an empty database (the invariants read all of it).")
        begin, end = sim_dates(start, months)
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
        stats = simulation.run()
        violations = invariants.check_all(issued_snapshots=simulation.issued_snapshots)
        violations += extension_violations(simulation)
        figures = report.figures(stats=stats, violations=violations, customers=customers, start=begin, end=end)
        figures.update(extension_figures(simulation))
        text_path, html_path = report.write(figures, out)
        self.stdout.write(report.text(figures))
        self.stdout.write(f"report: {text_path} and {html_path}")
        self.figures = figures
        self.simulation = simulation
        if violations:
            raise CommandError(f"{len(violations)} invariant violation(s)")
