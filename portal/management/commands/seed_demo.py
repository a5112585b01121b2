"""Load the demo data, idempotently: running it again changes nothing that is already there.

Handles (stable, documented in the README): staff admin@/support@/billing@continuum.test; customers Acme Inc,
Globex Corp, Initech GmbH, Umbrella LLC with their owners. Password for every demo login: continuum-demo.

Afterwards every demo subscription's current period contains today (billing/demo.py runs the billing run up to now),
so a seat or package change in the portal works at once instead of waiting for the hourly billing run.
"""

from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing.demo import seed_billing
from subscriptions.models import (
    LIVE_STATUSES,
    Customer,
    EntitlementValueKind,
    Membership,
    Package,
    PackageComponent,
    Price,
    Role,
    SeatAssignment,
    Sku,
    SkuKind,
    Subscription,
    User,
)
from subscriptions.services.audit import audit_occurred_at
from subscriptions.services.subscriptions import subscription_create

DEMO_PASSWORD = "continuum-demo"

SKUS = [
    # code, name, kind, tax category, feature key, value kind, value, feature label (the customer's words)
    ("PLAT-BASE-M", "Platform base fee", SkuKind.RECURRING_FLAT, "saas", "", "", None, ""),
    (
        "SEAT-STD-M",
        "Standard seat",
        SkuKind.RECURRING_PER_SEAT,
        "saas",
        "seats",
        EntitlementValueKind.PER_SEAT,
        None,
        "Seats",
    ),
    ("ONB-SETUP", "Onboarding and set-up", SkuKind.ONE_TIME, "services", "", "", None, ""),
    (
        "LIC-SSO",
        "Single sign-on licence",
        SkuKind.FEATURE,
        "saas",
        "sso",
        EntitlementValueKind.BOOLEAN,
        None,
        "Single sign-on",
    ),
    (
        "LIC-AUDIT",
        "Audit log licence",
        SkuKind.FEATURE,
        "saas",
        "audit_log",
        EntitlementValueKind.BOOLEAN,
        None,
        "Audit log",
    ),
    (
        "LIC-API-10K",
        "API 10k calls",
        SkuKind.FEATURE,
        "saas",
        "api_calls_per_month",
        EntitlementValueKind.LIMIT,
        10_000,
        "API calls per month",
    ),
    (
        "LIC-API-100K",
        "API 100k calls",
        SkuKind.FEATURE,
        "saas",
        "api_calls_per_month",
        EntitlementValueKind.LIMIT,
        100_000,
        "API calls per month",
    ),
    (
        "LIC-API-1M",
        "API 1M calls",
        SkuKind.FEATURE,
        "saas",
        "api_calls_per_month",
        EntitlementValueKind.LIMIT,
        1_000_000,
        "API calls per month",
    ),
    (
        "STOR-100",
        "Storage 100 GB",
        SkuKind.FEATURE,
        "saas",
        "storage_gb",
        EntitlementValueKind.LIMIT,
        100,
        "Storage (GB)",
    ),
    (
        "SUP-PREM-M",
        "Premium support fee",
        SkuKind.RECURRING_FLAT,
        "services",
        "premium_support",
        EntitlementValueKind.BOOLEAN,
        None,
        "Premium support",
    ),
    (
        "STOR-500-M",
        "Extra storage fee",
        SkuKind.RECURRING_FLAT,
        "saas",
        "extra_storage_gb",
        EntitlementValueKind.LIMIT,
        500,
        "Extra storage (GB)",
    ),
]

# slug: (name, tagline, outcome, features, order, included, min, max, trial, components, prices)
# prices: {(currency, interval): (flat, per seat, set-up)} in minor units.
PACKAGES = {
    "starter": (
        "Starter",
        "Everything a small team needs to get going",
        "Get your first team productive in a day.",
        ["Up to 10 people", "10,000 API calls a month", "100 GB storage", "E-mail support"],
        10,
        3,
        1,
        10,
        14,
        ["PLAT-BASE-M", "SEAT-STD-M", "LIC-API-10K", "STOR-100"],
        {
            ("USD", "month"): (4_900, 900, 0),
            ("USD", "year"): (49_000, 9_000, 0),
            ("EUR", "month"): (4_500, 800, 0),
            ("EUR", "year"): (45_000, 8_000, 0),
        },
    ),
    "team": (
        "Team",
        "Collaboration and control for growing teams",
        "Run your whole department on one workspace, with an audit trail.",
        ["Up to 100 people", "100,000 API calls a month", "Audit log", "Guided onboarding"],
        20,
        5,
        3,
        100,
        14,
        ["PLAT-BASE-M", "SEAT-STD-M", "ONB-SETUP", "LIC-API-100K", "LIC-AUDIT", "STOR-100"],
        {
            ("USD", "month"): (19_900, 1_500, 50_000),
            ("USD", "year"): (199_000, 15_000, 50_000),
            ("EUR", "month"): (18_500, 1_400, 45_000),
            ("EUR", "year"): (185_000, 14_000, 45_000),
        },
    ),
    "business": (
        "Business",
        "Security and scale for the whole company",
        "Roll out company-wide with single sign-on and generous limits.",
        [
            "Up to 1,000 people",
            "Single sign-on (SAML)",
            "1,000,000 API calls a month",
            "Audit log",
            "Guided onboarding",
        ],
        30,
        10,
        10,
        1000,
        0,
        ["PLAT-BASE-M", "SEAT-STD-M", "ONB-SETUP", "LIC-SSO", "LIC-API-1M", "LIC-AUDIT", "STOR-100"],
        {
            ("USD", "month"): (49_900, 2_500, 150_000),
            ("USD", "year"): (499_000, 25_000, 150_000),
            ("EUR", "month"): (46_000, 2_300, 140_000),
            ("EUR", "year"): (460_000, 23_000, 140_000),
        },
    ),
}
ADDONS = {
    "premium-support": (
        "Premium support",
        "A named support engineer and a 1-hour response time",
        40,
        ["SUP-PREM-M"],
        {("USD", "month"): 9_900, ("USD", "year"): 99_000, ("EUR", "month"): 8_900, ("EUR", "year"): 89_000},
    ),
    "extra-storage": (
        "Extra storage",
        "500 GB more storage for files and backups",
        50,
        ["STOR-500-M"],
        {("USD", "month"): 2_900, ("USD", "year"): 29_000, ("EUR", "month"): 2_700, ("EUR", "year"): 27_000},
    ),
}

CUSTOMERS = [
    # name, legal name, country, region, currency, package, interval, seats, people [(email, name, role)]
    (
        "Acme Inc",
        "Acme Incorporated",
        "US",
        "CA",
        "USD",
        "team",
        "month",
        10,
        [
            ("owner@acme.test", "Olivia Owner", Role.OWNER),
            ("ap@acme.test", "Avery Payable", Role.BILLING_ADMIN),
            ("dev@acme.test", "Dev Eloper", Role.MEMBER),
        ],
    ),
    (
        "Globex Corp",
        "Globex Corporation",
        "US",
        "NY",
        "USD",
        "business",
        "year",
        25,
        [("owner@globex.test", "Gale Owner", Role.OWNER)],
    ),
    (
        "Initech GmbH",
        "Initech GmbH",
        "DE",
        "",
        "EUR",
        "team",
        "month",
        6,
        [("owner@initech.test", "Ingrid Owner", Role.OWNER)],
    ),
    (
        "Umbrella LLC",
        "Umbrella Holdings LLC",
        "US",
        "TX",
        "USD",
        "starter",
        "month",
        3,
        [("owner@umbrella.test", "Uma Owner", Role.OWNER)],
    ),
]


# Demo subscriptions start three months before the first of this month, so each has invoice history.
def _history_start() -> datetime:
    now = timezone.now()
    month_index = now.month - 1 - 3
    return datetime(now.year + month_index // 12, month_index % 12 + 1, 1, tzinfo=UTC)


class Command(BaseCommand):
    help = "Load the demo catalog, customers, people and subscriptions (idempotent)."

    def handle(self, *args, **options):
        with transaction.atomic():
            self._staff()
            self._catalog()
            created = self._customers()
        # Billing history runs the real billing run month by month; outside the block above so that each service
        # commits (and queues its PDFs/e-mails) on its own.

        seed_billing(history_start=_history_start(), stdout=self.stdout)
        now = timezone.now()
        for subscription in Subscription.objects.filter(
            customer__name__in=[c[0] for c in CUSTOMERS], status__in=LIVE_STATUSES
        ).select_related("customer"):
            if not subscription.current_period_start <= now < subscription.current_period_end:
                self.stderr.write(
                    f"{subscription.customer.name}: the current period "
                    f"[{subscription.current_period_start:%Y-%m-%d}, {subscription.current_period_end:%Y-%m-%d}) "
                    "does not contain today; portal changes will fail until the billing run renews it."
                )
        self.stdout.write(self.style.SUCCESS(f"Demo data ready ({created} new customers). Password: {DEMO_PASSWORD}"))
        self.stdout.write(
            "Staff two-factor sign-in is "
            + ("REQUIRED" if settings.STAFF_OTP_REQUIRED else "optional here (required with DJANGO_ENV=production)")
            + ". Enrol an authenticator app: python manage.py staff_otp_enrol admin@continuum.test"
            + " (under make run-prod: scripts/run-prod manage staff_otp_enrol admin@continuum.test; docs/deploy.md)"
        )

    def _user(self, email: str, name: str = "", **extra) -> User:
        user, created = User.objects.get_or_create(email=email, defaults={"name": name, **extra})
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        return user

    def _staff(self) -> None:
        self._user("admin@continuum.test", "Ada Admin", is_staff=True, is_superuser=True)
        support = self._user("support@continuum.test", "Sam Support", is_staff=True)
        billing = self._user("billing@continuum.test", "Bea Billing", is_staff=True)
        support.groups.add(Group.objects.get_or_create(name="Support agents")[0])
        billing.groups.add(Group.objects.get_or_create(name="Billing staff")[0])

    def _catalog(self) -> None:
        skus = {}
        for code, name, kind, tax_category, feature_key, value_kind, value, label in SKUS:
            skus[code], _ = Sku.objects.get_or_create(
                code=code,
                defaults={
                    "name": name,
                    "kind": kind,
                    "tax_category": tax_category,
                    "feature_key": feature_key,
                    "feature_value_kind": value_kind,
                    "feature_value": value,
                    "feature_label": label,
                },
            )
        bases = []
        for slug, (name, tagline, outcome, features, order, included, lo, hi, trial, codes, prices) in PACKAGES.items():
            package, created = Package.objects.get_or_create(
                slug=slug,
                defaults={
                    "name": name,
                    "tagline": tagline,
                    "outcome": outcome,
                    "features": features,
                    "display_order": order,
                    "included_seats": included,
                    "min_seats": lo,
                    "max_seats": hi,
                    "trial_days": trial,
                    "intervals": ["month", "year"],
                },
            )
            bases.append(package)
            if created:
                for code in codes:
                    PackageComponent.objects.create(package=package, sku=skus[code])
                for (currency, interval), (flat, seat, setup) in prices.items():
                    Price.objects.create(
                        package=package,
                        currency=currency,
                        interval=interval,
                        flat_amount_minor=flat,
                        seat_amount_minor=seat,
                        setup_amount_minor=setup,
                    )
        for package in bases:
            package.change_targets.add(*[other for other in bases if other != package])
        for slug, (name, tagline, order, codes, prices) in ADDONS.items():
            addon, created = Package.objects.get_or_create(
                slug=slug,
                defaults={
                    "name": name,
                    "tagline": tagline,
                    "display_order": order,
                    "is_addon": True,
                    "included_seats": 0,
                    "min_seats": 0,
                    "intervals": ["month", "year"],
                },
            )
            if created:
                for code in codes:
                    PackageComponent.objects.create(package=addon, sku=skus[code])
                for (currency, interval), flat in prices.items():
                    Price.objects.create(package=addon, currency=currency, interval=interval, flat_amount_minor=flat)
                addon.addon_for.add(*bases)

    def _customers(self) -> int:
        created_count = 0
        for name, legal, country, region, currency, slug, interval, seats, people in CUSTOMERS:
            customer, created = Customer.objects.get_or_create(
                name=name,
                defaults={"legal_name": legal, "country": country, "region": region, "currency": currency},
            )
            created_count += created
            users = []
            for email, person, role in people:
                user = self._user(email, person)
                Membership.objects.get_or_create(user=user, customer=customer, defaults={"role": role})
                users.append(user)
            if not Subscription.objects.filter(customer=customer).exists():
                # The demo customer subscribed when its history starts: its activity says so, not the seed time.
                with audit_occurred_at(_history_start()):
                    subscription = subscription_create(
                        customer=customer,
                        package=Package.objects.get(slug=slug),
                        interval=interval,
                        seats=seats,
                        start=_history_start(),
                        actor=users[0],
                    )
                for user in users:
                    SeatAssignment.objects.get_or_create(subscription=subscription, user=user)
        return created_count
