"""The hand-computed revenue fixture (issue 20): 12 customers over 14 months, built with the real services.

Catalog (round numbers; annual prices are ten times the monthly ones):
  Starter 50.00 flat + 5.00/seat above 3 included; Team 100.00 flat + 10.00/seat above 5 (trial 14 days);
  add-on Premium support 30.00 a month.
Months M0 … M13: M13 is the last whole month before the test clock's month (M_k = month_start(k − 14)).
Starts are on the 10th at 12:00 UTC (so periods renew on the 10th), changes on the 15th at 12:00 UTC.

USD customers and their MRR at each month-end (minor units), worked by hand:
  A  Team monthly 10 seats from M0                                  15000 always
  B  Team monthly 5 seats from M0; +3 seats (now) in M3             10000 → 13000 from M3 (expansion)
  C  Team annual 5 seats from M0: 1000.00 ÷ 12 = 83.333…            8333 always (rounded half up)
  D  Team monthly 10 from M0; cancel at period end requested M5     15000 to M5; ends 10th of M6 → churned in M6
  E  Team monthly 10 from M0; decrease to 7 requested M4            15000 to M4; 12000 from M5 (applied 10th M5)
  F  Starter monthly 3 from M2; upgrade to Team 6 seats in M6       5000 M2–M5 (new in M2); 11000 from M6
  G  Team monthly 6 from M1; + Premium support M4; canceled now M8  11000 M1–M3; 14000 M4–M7; 0 from M8
  H  Team monthly 5 with a 14-day trial from the 20th of M3         0 at end of M3 (trial); 10000 from M4 (new)
  I  Team monthly 5 from M0; canceled now M2; subscribes again M7   10000 M0–M1; 0 M2–M6; 10000 from M7 (reactivation)
  J  Team annual 10 from M1: 1500.00 ÷ 12; 12 seats in M9           12500 M1–M8; 1700.00 ÷ 12 = 14167 from M9
  L  Team monthly 5 from M11                                        10000 from M11
EUR customer K: Team monthly 10 from M0, 15000 EUR always.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import time_machine

from subscriptions import clock
from subscriptions.models import Customer, Package, PackageComponent, Price, SkuKind, Subscription
from subscriptions.periods import add_months
from subscriptions.services.changes import (
    subscription_addon_add_apply,
    subscription_cancel_apply,
    subscription_change_package_apply,
    subscription_change_seats_apply,
)
from subscriptions.services.lifecycle import subscription_cancel_now, subscription_renew
from subscriptions.services.subscriptions import subscription_create
from tests.clock import month_start
from tests.factories import CustomerFactory, PackageFactory, SkuFactory

MONTHS = 14


_ANCHOR: list[datetime] = []


def month(k: int) -> datetime:
    """Midnight UTC on the 1st of M_k (fixed when the fixture is built, so travelling the clock never moves it)."""
    if not _ANCHOR:
        _ANCHOR.append(month_start(-MONTHS))
    return add_months(_ANCHOR[0], k)


def on(k: int, day: int, hour: int = 12) -> datetime:
    return month(k) + timedelta(days=day - 1, hours=hour)


@dataclass
class Catalog:
    starter: Package
    team: Package
    premium: Package


def _package(slug, name, flat, seat, included, **extra) -> Package:
    package = PackageFactory(
        slug=slug, name=name, included_seats=included, min_seats=1, max_seats=100, intervals=["month", "year"], **extra
    )
    PackageComponent.objects.create(package=package, sku=SkuFactory(code="PLAT-BASE-M", kind=SkuKind.RECURRING_FLAT))
    PackageComponent.objects.create(package=package, sku=SkuFactory(code="SEAT-STD-M", kind=SkuKind.RECURRING_PER_SEAT))
    for currency in ("USD", "EUR"):
        for interval, times in (("month", 1), ("year", 10)):
            price = Price.objects.create(
                package=package,
                currency=currency,
                interval=interval,
                flat_amount_minor=flat * times,
                seat_amount_minor=seat * times,
            )
            # Sold since before the fixture's first month (the catalog price in force when each stretch began).
            Price.objects.filter(pk=price.pk).update(created_at=month(0) - timedelta(days=30))
    return package


def build_catalog() -> Catalog:
    starter = _package("starter", "Starter", 5_000, 500, 3)
    team = _package("team", "Team", 10_000, 1_000, 5, trial_days=14)
    for package in (starter, team):
        package.change_targets.add(*[p for p in (starter, team) if p != package])
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
    premium.addon_for.add(starter, team)
    return Catalog(starter=starter, team=team, premium=premium)


def renew_all(as_of: datetime) -> None:
    due = Subscription.objects.filter(current_period_end__lte=as_of).exclude(status="ended")
    for pk in due.values_list("pk", flat=True):
        subscription_renew(subscription_id=pk, as_of=as_of)


def _version(sub: Subscription) -> int:
    return Subscription.objects.get(pk=sub.pk).version


@dataclass
class Fixture:
    catalog: Catalog
    customers: dict[str, Customer]


def build_fixture() -> Fixture:
    """Build the whole history in time order (the clock travels to each event), then renew up to now."""
    _ANCHOR[:] = [month_start(-MONTHS)]
    catalog = build_catalog()
    customers = {name: CustomerFactory(name=f"Customer {name}") for name in "ABCDEFGHIJL"}
    customers["K"] = CustomerFactory(name="Customer K", currency="EUR", country="DE", region="")
    subs: dict[str, Subscription] = {}
    team, starter = catalog.team, catalog.starter

    def create(key, name, package, interval, seats, k, day=10, trial=False):
        at = on(k, day)
        subs[key] = subscription_create(
            customer=customers[name], package=package, interval=interval, seats=seats, start=at, trial=trial
        )

    def seats(key, count, k):
        sub = subs[key]
        subscription_change_seats_apply(
            subscription_id=sub.pk, seats=count, expected_version=_version(sub), actor=None, at=on(k, 15)
        )

    events = [
        (on(0, 10), lambda: create("A", "A", team, "month", 10, 0)),
        (on(0, 10), lambda: create("B", "B", team, "month", 5, 0)),
        (on(0, 10), lambda: create("C", "C", team, "year", 5, 0)),
        (on(0, 10), lambda: create("D", "D", team, "month", 10, 0)),
        (on(0, 10), lambda: create("E", "E", team, "month", 10, 0)),
        (on(0, 10), lambda: create("I", "I", team, "month", 5, 0)),
        (on(0, 10), lambda: create("K", "K", team, "month", 10, 0)),
        (on(1, 10), lambda: create("G", "G", team, "month", 6, 1)),
        (on(1, 10), lambda: create("J", "J", team, "year", 10, 1)),
        (on(2, 10), lambda: create("F", "F", starter, "month", 3, 2)),
        (
            on(2, 15),
            lambda: subscription_cancel_now(subscription_id=subs["I"].pk, actor=None, reason="budget", at=on(2, 15)),
        ),
        (on(3, 15), lambda: seats("B", 8, 3)),
        (on(3, 20), lambda: create("H", "H", team, "month", 5, 3, day=20, trial=True)),
        (on(4, 15), lambda: seats("E", 7, 4)),
        (
            on(4, 15),
            lambda: subscription_addon_add_apply(
                subscription_id=subs["G"].pk,
                addon_slug="premium-support",
                expected_version=_version(subs["G"]),
                actor=None,
                at=on(4, 15),
            ),
        ),
        (
            on(5, 15),
            lambda: subscription_cancel_apply(
                subscription_id=subs["D"].pk,
                reason="moving on",
                expected_version=_version(subs["D"]),
                actor=None,
                at=on(5, 15),
            ),
        ),
        (
            on(6, 15),
            lambda: subscription_change_package_apply(
                subscription_id=subs["F"].pk,
                package_slug="team",
                seats=6,
                expected_version=_version(subs["F"]),
                actor=None,
                at=on(6, 15),
            ),
        ),
        (on(7, 10), lambda: create("I2", "I", team, "month", 5, 7)),
        (
            on(8, 15),
            lambda: subscription_cancel_now(subscription_id=subs["G"].pk, actor=None, reason="closed", at=on(8, 15)),
        ),
        (on(9, 15), lambda: seats("J", 12, 9)),
        (on(11, 10), lambda: create("L", "L", team, "month", 5, 11)),
    ]
    for at, event in sorted(events, key=lambda item: item[0]):
        with time_machine.travel(at, tick=False):
            renew_all(at)
            event()
    now = clock.now()
    with time_machine.travel(now, tick=False):
        renew_all(now)
    return Fixture(catalog=catalog, customers=customers)


# The expected month-end MRR (USD, minor units) of each customer, M0 … M13 (the table in the docstring).
def _series(**stretches) -> list[int]:
    values = [0] * MONTHS
    for key, value in stretches.items():
        start = int(key[1:])
        for k in range(start, MONTHS):
            values[k] = value
    return values


EXPECTED_MRR = {
    "A": _series(m0=15000),
    "B": _series(m0=10000, m3=13000),
    "C": _series(m0=8333),
    "D": _series(m0=15000, m6=0),
    "E": _series(m0=15000, m5=12000),
    "F": _series(m2=5000, m6=11000),
    "G": _series(m1=11000, m4=14000, m8=0),
    "H": _series(m4=10000),
    "I": _series(m0=10000, m2=0, m7=10000),
    "J": _series(m1=12500, m9=14167),
    "L": _series(m11=10000),
}
