"""The catalog: internal SKUs, and the packages customers see and buy.

Customers never pick a SKU: a package is composed of SKUs (components), and its prices say what each priced
component costs. SKUs drive billing lines (tax category, small-print code) and entitlements (feature key and value).
"""

from django.db import models


class SkuKind(models.TextChoices):
    RECURRING_FLAT = "recurring_flat", "Recurring flat fee"
    RECURRING_PER_SEAT = "recurring_per_seat", "Recurring per-seat fee"
    ONE_TIME = "one_time", "One-time fee"
    FEATURE = "feature", "Feature licence (no price of its own)"


class EntitlementValueKind(models.TextChoices):
    NONE = "", "Grants no entitlement"
    BOOLEAN = "boolean", "On/off"
    LIMIT = "limit", "A limit (integer)"
    PER_SEAT = "per_seat", "One per seat"


class Sku(models.Model):
    code = models.CharField(max_length=40, unique=True, help_text="Internal code, e.g. SEAT-STD-M.")
    name = models.CharField(max_length=120, help_text="Internal name.")
    kind = models.CharField(max_length=20, choices=SkuKind.choices)
    tax_category = models.CharField(max_length=30, default="saas", help_text="e.g. saas, services.")
    feature_key = models.SlugField(max_length=60, blank=True, help_text="Entitlement granted, e.g. seats, sso.")
    feature_label = models.CharField(
        max_length=80,
        blank=True,
        help_text="The feature in the customer's words, e.g. “API calls per month”, “Storage (GB)”, “Single sign-on” "
        "(shown on the dashboard and in the API; required when the SKU grants a feature).",
    )
    feature_value_kind = models.CharField(max_length=10, choices=EntitlementValueKind.choices, blank=True)
    feature_value = models.BigIntegerField(null=True, blank=True, help_text="The limit, for limit entitlements.")
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        verbose_name = "SKU"

    def __str__(self) -> str:
        return self.code


class Interval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Annual"


class DowngradeTiming(models.TextChoices):
    PERIOD_END = "period_end", "At the end of the current period (no refund)"
    IMMEDIATE = "immediate", "Immediately, with a prorated credit"


class Package(models.Model):
    """What customers see and buy: described in their words, composed of SKUs."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    tagline = models.CharField(max_length=200, blank=True)
    outcome = models.TextField(blank=True, help_text="The outcome this package serves, in the customer's words.")
    features = models.JSONField(default=list, blank=True, help_text="List of feature descriptions (strings).")
    display_order = models.PositiveIntegerField(default=0)
    is_public = models.BooleanField(default=True)
    is_active = models.BooleanField(default=True)
    is_addon = models.BooleanField(default=False)
    addon_for = models.ManyToManyField(
        "self", symmetrical=False, blank=True, related_name="addons", help_text="Base packages this add-on attaches to."
    )
    change_targets = models.ManyToManyField(
        "self",
        symmetrical=False,
        blank=True,
        related_name="change_sources",
        help_text="Packages a subscriber of this package may move to.",
    )
    included_seats = models.PositiveIntegerField(default=0, help_text="Seats covered by the flat fee.")
    min_seats = models.PositiveIntegerField(default=1)
    max_seats = models.PositiveIntegerField(null=True, blank=True)
    trial_days = models.PositiveIntegerField(default=0)
    downgrade_timing = models.CharField(
        max_length=20, choices=DowngradeTiming.choices, default=DowngradeTiming.PERIOD_END
    )
    intervals = models.JSONField(default=list, help_text='Billing intervals offered, e.g. ["month", "year"].')
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_order", "name"]

    def __str__(self) -> str:
        return self.name


class PackageComponent(models.Model):
    package = models.ForeignKey(Package, on_delete=models.CASCADE, related_name="components")
    sku = models.ForeignKey(Sku, on_delete=models.PROTECT, related_name="package_components")
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["package_id", "sku__code"]
        constraints = [models.UniqueConstraint(fields=["package", "sku"], name="component_unique_package_sku")]

    def __str__(self) -> str:
        return f"{self.package} ← {self.sku}"


class Price(models.Model):
    """What a package costs in one currency and interval.

    A price row is never edited once a subscription uses it: a price change is a new row, and the old one is
    deactivated. Subscriptions keep pointing at (and snapshot) the row they were sold at — grandfathering.
    """

    package = models.ForeignKey(Package, on_delete=models.CASCADE, related_name="prices")
    currency = models.CharField(max_length=3)
    interval = models.CharField(max_length=10, choices=Interval.choices)
    flat_amount_minor = models.BigIntegerField(default=0, help_text="Recurring flat fee per interval.")
    seat_amount_minor = models.BigIntegerField(default=0, help_text="Per seat above the included seats, per interval.")
    setup_amount_minor = models.BigIntegerField(default=0, help_text="One-time fee, charged on the first invoice.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["package_id", "currency", "interval", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["package", "currency", "interval"],
                condition=models.Q(is_active=True),
                name="price_one_active_per_package_currency_interval",
            ),
            models.CheckConstraint(
                condition=models.Q(flat_amount_minor__gte=0, seat_amount_minor__gte=0, setup_amount_minor__gte=0),
                name="price_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.package} {self.currency} / {self.interval}"
