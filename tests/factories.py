"""factory_boy factories shared by every test module. Append new factories; keep existing ones stable."""

from datetime import UTC, datetime

import factory

from subscriptions.models import (
    Customer,
    Membership,
    Package,
    PackageComponent,
    Price,
    Role,
    SeatAssignment,
    Sku,
    SkuKind,
    Subscription,
    SubscriptionStatus,
    User,
)
from subscriptions.periods import period_end
from tests.clock import month_start

DEFAULT_PASSWORD = "continuum-demo"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)

    email = factory.Sequence(lambda n: f"user{n}@example.test")
    name = factory.Faker("name")
    password = factory.django.Password(DEFAULT_PASSWORD)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n}")
    legal_name = factory.LazyAttribute(lambda o: f"{o.name} Ltd")
    country = "US"
    region = "CA"
    currency = "USD"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    customer = factory.SubFactory(CustomerFactory)
    role = Role.OWNER


class SkuFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sku
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"SKU-{n}")
    name = factory.LazyAttribute(lambda o: o.code)
    kind = SkuKind.RECURRING_FLAT
    tax_category = "saas"


class PackageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Package
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"package-{n}")
    name = factory.Sequence(lambda n: f"Package {n}")
    tagline = "A package"
    features = factory.LazyFunction(lambda: ["Feature one", "Feature two"])
    included_seats = 5
    min_seats = 1
    max_seats = 100
    intervals = factory.LazyFunction(lambda: ["month", "year"])


class PriceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Price

    package = factory.SubFactory(PackageFactory)
    currency = "USD"
    interval = "month"
    flat_amount_minor = 10_000
    seat_amount_minor = 1_000


def priced_package(*, slug: str = "team", currencies=("USD", "EUR"), **package_fields) -> Package:
    """A sellable package: flat + per-seat components, monthly and annual prices in each currency."""
    package = PackageFactory(slug=slug, name=package_fields.pop("name", slug.title()), **package_fields)
    flat = SkuFactory(code="PLAT-BASE-M", kind=SkuKind.RECURRING_FLAT)
    seat = SkuFactory(
        code="SEAT-STD-M",
        kind=SkuKind.RECURRING_PER_SEAT,
        feature_key="seats",
        feature_value_kind="per_seat",
        feature_label="Seats",
    )
    PackageComponent.objects.get_or_create(package=package, sku=flat)
    PackageComponent.objects.get_or_create(package=package, sku=seat)
    for currency in currencies:
        PriceFactory(
            package=package, currency=currency, interval="month", flat_amount_minor=10_000, seat_amount_minor=1_000
        )
        PriceFactory(
            package=package, currency=currency, interval="year", flat_amount_minor=100_000, seat_amount_minor=10_000
        )
    return package


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- subscriptions (issue 4) ------------------------------------------------------------------------------------


def _team_package() -> Package:
    return Package.objects.filter(slug="team").first() or priced_package(slug="team")


class SubscriptionFactory(factory.django.DjangoModelFactory):
    """An active subscription snapshotting the package's active price; defaults to the "team" priced_package,
    10 seats, monthly, in the period that contains now: it starts at midnight UTC on the 1st of this month (relative
    to the test clock, see tests/clock.py), anchored there."""

    class Meta:
        model = Subscription

    customer = factory.SubFactory(CustomerFactory)
    package = factory.LazyFunction(_team_package)
    interval = "month"
    currency = factory.SelfAttribute("customer.currency")
    price = factory.LazyAttribute(
        lambda o: Price.objects.get(package=o.package, currency=o.currency, interval=o.interval, is_active=True)
    )
    flat_amount_minor = factory.LazyAttribute(lambda o: o.price.flat_amount_minor)
    seat_amount_minor = factory.LazyAttribute(lambda o: o.price.seat_amount_minor)
    included_seats = factory.LazyAttribute(lambda o: o.package.included_seats)
    status = SubscriptionStatus.ACTIVE
    seats = 10
    committed_seats = factory.LazyAttribute(lambda o: o.seats if o.interval == "year" else 0)
    current_period_start = factory.LazyFunction(lambda: month_start())
    current_period_end = factory.LazyAttribute(lambda o: period_end(o.current_period_start, o.interval))
    trial_end = None
    # Paid periods count from the trial end when there is one (as subscription_create anchors them).
    billing_anchor = factory.LazyAttribute(lambda o: o.trial_end or o.current_period_start)


class SeatAssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SeatAssignment

    subscription = factory.SubFactory(SubscriptionFactory)
    user = factory.SubFactory(UserFactory)


# --- billing (issue 6) ---------------------------------------------------------------------------------------------
from datetime import date  # noqa: E402
from decimal import Decimal  # noqa: E402

from billing.models import BillingProfile, TaxRate  # noqa: E402


class BillingProfileFactory(factory.django.DjangoModelFactory):
    """A complete billing profile (valid address in California) for `customer`."""

    class Meta:
        model = BillingProfile
        django_get_or_create = ("customer",)

    customer = factory.SubFactory(CustomerFactory)
    legal_name = factory.LazyAttribute(lambda o: o.customer.legal_name or o.customer.name)
    address_line1 = "1 Infinite Loop"
    city = "Cupertino"
    region = factory.LazyAttribute(lambda o: o.customer.region)
    postal_code = "95014"
    country = factory.LazyAttribute(lambda o: o.customer.country)
    billing_emails = factory.LazyFunction(lambda: ["ap@customer.test"])
    currency = factory.LazyAttribute(lambda o: o.customer.currency)


class TaxRateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TaxRate

    country = "US"
    region = "CA"
    name = "CA sales tax"
    rate = Decimal("7.2500")
    tax_categories = factory.LazyFunction(lambda: ["saas"])
    effective_from = date(2020, 1, 1)
