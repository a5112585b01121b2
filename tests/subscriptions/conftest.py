"""A small catalog with round numbers, so expected amounts in the tests can be checked by hand.

Starter: 50.00 flat + 5.00/seat above 3 included (1–10 seats). Team: 100.00 flat + 10.00/seat above 5 (1–100).
Business: 300.00 flat + 20.00/seat above 10 (10–1000). Annual prices are ten times the monthly ones.
Add-on "premium-support": 30.00 a month. Every base package can move to every other one.
"""

from dataclasses import dataclass

import pytest

from portal.celery import app
from subscriptions.models import Package, PackageComponent, Price, SkuKind
from tests.factories import CustomerFactory, PackageFactory, SkuFactory, SubscriptionFactory, utc


@dataclass
class Catalog:
    starter: Package
    team: Package
    business: Package
    premium: Package


def _package(slug, name, flat, seat, included, lo, hi, *, currencies=("USD", "EUR"), **extra) -> Package:
    package = PackageFactory(
        slug=slug, name=name, included_seats=included, min_seats=lo, max_seats=hi, intervals=["month", "year"], **extra
    )
    PackageComponent.objects.create(package=package, sku=SkuFactory(code="PLAT-BASE-M", kind=SkuKind.RECURRING_FLAT))
    if seat:
        PackageComponent.objects.create(
            package=package, sku=SkuFactory(code="SEAT-STD-M", kind=SkuKind.RECURRING_PER_SEAT)
        )
    for currency in currencies:
        for interval, times in (("month", 1), ("year", 10)):
            Price.objects.create(
                package=package,
                currency=currency,
                interval=interval,
                flat_amount_minor=flat * times,
                seat_amount_minor=seat * times,
            )
    return package


@pytest.fixture
def catalog(db) -> Catalog:
    starter = _package("starter", "Starter", 5_000, 500, 3, 1, 10)
    team = _package("team", "Team", 10_000, 1_000, 5, 1, 100)
    business = _package("business", "Business", 30_000, 2_000, 10, 10, 1000)
    for package in (starter, team, business):
        package.change_targets.add(*[p for p in (starter, team, business) if p != package])
    premium = PackageFactory(
        slug="premium-support",
        name="Premium support",
        is_addon=True,
        included_seats=0,
        min_seats=0,
        max_seats=None,
        intervals=["month", "year"],
    )
    PackageComponent.objects.create(
        package=premium, sku=SkuFactory(code="SUP-PREM-M", kind=SkuKind.RECURRING_FLAT, tax_category="services")
    )
    for currency in ("USD", "EUR"):
        Price.objects.create(package=premium, currency=currency, interval="month", flat_amount_minor=3_000)
        Price.objects.create(package=premium, currency=currency, interval="year", flat_amount_minor=30_000)
    premium.addon_for.add(starter, team, business)
    return Catalog(starter=starter, team=team, business=business, premium=premium)


@pytest.fixture
def subscription(catalog):
    """Team, monthly, 10 seats (5 billed), period [1 Nov 2026, 1 Dec 2026) — 30 days. Recurring 150.00."""
    return SubscriptionFactory(customer=CustomerFactory(), package=catalog.team, seats=10)


NOV_12 = utc(2026, 11, 12, 15, 30)


@pytest.fixture
def celery_retries_like_a_worker():
    """Run eager tasks' retries the way a worker does: `self.retry` schedules the next attempt and the caller sees
    none of it. With `task_eager_propagates` off, Celery's eager `apply` re-runs the retry itself (countdowns are not
    waited for); with it on (the test settings), the Retry would reach the caller like any other error."""
    saved = app.conf.task_eager_propagates
    app.conf.task_eager_propagates = False
    try:
        yield
    finally:
        app.conf.task_eager_propagates = saved
