"""The simulated world: catalog and staff (the demo's), tax rates, and a realistic, seeded customer mix."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.contrib.auth.models import Group
from stdnum.iso7064 import mod_11_10

from billing.models import TaxRate
from portal.management.commands.seed_demo import Command as DemoSeed
from subscriptions.models import User

# (country, region, printed name, rate, categories): the demo's rates plus one more state and two EU countries.
TAX_RATES = [
    ("US", "CA", "CA sales tax", "7.25", ["saas"]),
    ("US", "NY", "NY sales tax", "8.875", ["saas"]),
    ("US", "TX", "TX sales tax", "6.25", ["saas"]),
    ("US", "WA", "WA sales tax", "6.5", ["saas", "services"]),
    ("DE", "", "VAT DE", "19", ["saas", "services"]),
    ("FR", "", "TVA FR", "20", ["saas", "services"]),
]
# US states that tax SaaS (rates above) and states that do not (no rate row: no tax).
TAXED_STATES = ["CA", "NY", "TX", "WA"]
UNTAXED_STATES = ["OR", "MT", "NH"]
CITIES = {
    "CA": ("San Francisco", "94105"),
    "NY": ("New York", "10001"),
    "TX": ("Austin", "73301"),
    "WA": ("Seattle", "98101"),
    "OR": ("Portland", "97201"),
    "MT": ("Helena", "59601"),
    "NH": ("Concord", "03301"),
    "DE": ("Berlin", "10117"),
    "FR": ("Paris", "75001"),
}

# Kinds of customer and their share of the base.
MIX = [
    ("us_taxed", 0.42),
    ("us_untaxed", 0.12),
    ("us_po", 0.14),  # PO-required (a standing PO for some, PO per invoice for the others)
    ("eu_vat", 0.14),  # EU business with a valid VAT ID: reverse charge
    ("eu_no_vat", 0.08),  # EU without a VAT ID: local VAT
    ("us_incomplete", 0.05),  # signs up without a postal address: held until the address is complete
    ("us_exempt", 0.05),  # declares a resale exemption at sign-up
]
PACKAGES = [("starter", 0.40, 1, 10), ("team", 0.45, 3, 40), ("business", 0.15, 10, 80)]


def german_vat_id(rng: random.Random) -> str:
    """A VAT number with a valid ISO 7064 Mod 11,10 check digit (python-stdnum validates it on save)."""
    body = str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(7))
    return f"DE{body}{mod_11_10.calc_check_digit(body)}"


@dataclass
class SimCustomer:
    index: int
    kind: str
    country: str
    region: str
    currency: str
    package: str
    interval: str
    seats: int
    trial: bool
    signup_day: int  # days after the start
    tax_id: str = ""
    requires_po: bool = False
    standing_po: str = ""
    exemption_at_signup: bool = False
    # Filled in when the customer exists
    customer_id: int | None = None
    owner_id: int | None = None
    subscription_id: int | None = None
    members: list[int] = field(default_factory=list)

    @property
    def email(self) -> str:
        return f"owner{self.index}@sim.test"

    @property
    def name(self) -> str:
        return f"Sim {self.kind.replace('_', ' ').title()} {self.index:04d}"


def _pick(rng: random.Random, weighted):
    roll, acc = rng.random(), 0.0
    for item in weighted:
        acc += item[1]
        if roll < acc:
            return item
    return weighted[-1]


def customers_generate(*, rng: random.Random, count: int, signup_days: int) -> list[SimCustomer]:
    """The customer mix. Sign-ups are spread over the first `signup_days` days so that every day of the month,
    the 29th to the 31st included, gets some."""
    result = []
    for index in range(1, count + 1):
        kind = _pick(rng, MIX)[0]
        slug, _, lo, hi = _pick(rng, PACKAGES)
        if kind.startswith("eu"):
            country, region, currency = rng.choice(["DE", "DE", "FR"]), "", "EUR"
        elif kind in ("us_untaxed",):
            country, region, currency = "US", rng.choice(UNTAXED_STATES), "USD"
        else:
            country, region, currency = "US", rng.choice(TAXED_STATES), "USD"
        customer = SimCustomer(
            index=index,
            kind=kind,
            country=country,
            region=region,
            currency=currency,
            package=slug,
            interval="year" if rng.random() < 0.25 else "month",
            seats=rng.randint(lo, min(hi, lo + 15)),
            trial=slug != "business" and rng.random() < 0.2,
            signup_day=rng.randrange(signup_days),
        )
        if kind == "eu_vat":
            country = customer.country = "DE"  # valid German VAT IDs are generated; FR customers go without
            customer.tax_id = german_vat_id(rng)
        if kind == "us_po":
            customer.requires_po = True
            customer.standing_po = f"PO-{index:05d}" if rng.random() < 0.5 else ""
        customer.exemption_at_signup = kind == "us_exempt"
        result.append(customer)
    return result


def world_build() -> dict:
    """Catalog, staff and tax rates, exactly as the demo has them (plus the extra rates above)."""
    seed = DemoSeed()
    seed._staff()
    seed._catalog()
    for country, region, name, rate, categories in TAX_RATES:
        TaxRate.objects.get_or_create(
            country=country,
            region=region,
            name=name,
            defaults={"rate": Decimal(rate), "tax_categories": categories, "effective_from": date(2020, 1, 1)},
        )
    clerk = User.objects.get(email="billing@continuum.test")
    clerk.groups.add(Group.objects.get_or_create(name="Billing staff")[0])
    return {"clerk": clerk}
