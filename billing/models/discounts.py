"""Discounts: coupons staff define, promotion codes customers redeem, and the discounts they create.

Money is integer minor units plus a currency. A coupon is immutable once redeemed (like a price): its terms are what
every discount made from it was sold with, so editing one means creating a new one (guarded in `save()`, and the
admin shows a redeemed coupon read-only). Computation rules: docs/billing-rules.md, "Discounts".
"""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from billing.exceptions import CouponImmutable
from subscriptions.models import Customer, Package, Subscription


class CouponKind(models.TextChoices):
    PERCENT = "percent", "Percentage off"
    FIXED = "fixed", "Fixed amount off"


class CouponDuration(models.TextChoices):
    ONCE = "once", "Once (one billing period)"
    REPEATING = "repeating", "Repeating for a number of billing periods"
    FOREVER = "forever", "Forever"


class Coupon(models.Model):
    name = models.CharField(max_length=120, help_text="Printed on invoices, e.g. “Launch offer 20 %”.")
    kind = models.CharField(max_length=10, choices=CouponKind.choices)
    percent_off = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True, help_text="For percentage coupons: 0 < % ≤ 100."
    )
    duration = models.CharField(max_length=10, choices=CouponDuration.choices)
    duration_periods = models.PositiveIntegerField(
        null=True, blank=True, help_text="For repeating coupons: how many billing periods the discount runs."
    )
    applies_to_all = models.BooleanField(default=True, help_text="Everything billed; else only the packages below.")
    packages = models.ManyToManyField(
        Package, blank=True, related_name="coupons", help_text="Packages or add-ons the coupon applies to."
    )
    redeem_by = models.DateTimeField(null=True, blank=True, help_text="Cannot be redeemed from this moment on.")
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    new_customers_only = models.BooleanField(default=False, help_text="Only customers never invoiced before.")
    min_seats = models.PositiveIntegerField(null=True, blank=True, help_text="Minimum purchased seats.")
    times_redeemed = models.PositiveIntegerField(default=0, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # What a discount made from this coupon was sold with: frozen once redeemed.
    FROZEN_WHEN_REDEEMED = (
        "name",
        "kind",
        "percent_off",
        "duration",
        "duration_periods",
        "applies_to_all",
        "min_seats",
        "new_customers_only",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="percent", percent_off__gt=0, percent_off__lte=100))
                | models.Q(kind="fixed", percent_off__isnull=True),
                name="coupon_percent_in_range",
            ),
            models.CheckConstraint(
                condition=models.Q(duration="repeating", duration_periods__gte=1)
                | (~models.Q(duration="repeating") & models.Q(duration_periods__isnull=True)),
                name="coupon_repeating_has_periods",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        # Invariant guard, not business logic: customers were sold these terms. Compared with the stored row, so an
        # instance loaded before the first redemption cannot overwrite the terms either.
        if self.pk:
            stored = Coupon.objects.filter(pk=self.pk, times_redeemed__gt=0).values(*self.FROZEN_WHEN_REDEEMED).first()
            changed = [name for name, value in (stored or {}).items() if getattr(self, name) != value]
            if changed:
                raise CouponImmutable(
                    f"Coupon “{stored['name']}” has been redeemed and cannot change ({', '.join(changed)}); "
                    "create a new coupon instead."
                )
        super().save(*args, **kwargs)


class CouponAmount(models.Model):
    """A fixed coupon's amount off per billing period in one currency (a coupon without one for a subscription's
    currency does not apply to it)."""

    coupon = models.ForeignKey(Coupon, on_delete=models.CASCADE, related_name="amounts")
    currency = models.CharField(max_length=3)
    amount_minor = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["currency"]
        constraints = [
            models.UniqueConstraint(fields=["coupon", "currency"], name="coupon_amount_one_per_currency"),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="coupon_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.amount_minor} {self.currency}"

    def save(self, *args, **kwargs):
        if self.coupon_id and Coupon.objects.filter(pk=self.coupon_id, times_redeemed__gt=0).exists():
            raise CouponImmutable("This coupon has been redeemed; its amounts cannot change.")
        super().save(*args, **kwargs)


class PromotionCode(models.Model):
    """A customer-facing code for a coupon (`LAUNCH20`); matched case-insensitively, unique whatever the case."""

    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="promotion_codes")
    code = models.CharField(max_length=40, help_text="What customers type; letters, digits, - and _.")
    is_active = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    first_time_only = models.BooleanField(default=False, help_text="Only customers never invoiced before.")
    times_redeemed = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(Lower("code"), name="promotion_code_unique_ci")]

    def __str__(self) -> str:
        return self.code


class Discount(models.Model):
    """A coupon applied to a customer (every subscription) or to one subscription.

    It is active from `starts_at` until `ends_at` (empty: forever) and applies to a line when it is active at the
    instant the line's charge begins (`discount_active_at`): a period's start for the period's own lines, the change
    instant for a mid-period change's lines. `ends_at` is always a period boundary of the subscription, so a discount
    that ends mid-period runs to the next boundary. docs/billing-rules.md, "Discounts"."""

    coupon = models.ForeignKey(Coupon, on_delete=models.PROTECT, related_name="discounts")
    promotion_code = models.ForeignKey(
        PromotionCode, null=True, blank=True, on_delete=models.PROTECT, related_name="discounts"
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="discounts")
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.PROTECT, related_name="discounts"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(null=True, blank=True, help_text="A period boundary; empty = forever.")
    periods_total = models.PositiveIntegerField(null=True, blank=True, help_text="Billing periods it covers.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        indexes = [models.Index(fields=["customer", "subscription"], name="discount_customer_sub")]

    def __str__(self) -> str:
        return f"{self.coupon} for {self.customer_id}"

    def active_at(self, instant) -> bool:
        return discount_active_at(self.starts_at, self.ends_at, instant)

    def covers(self, period_start, period_end=None) -> bool:
        """Whether it applies to the lines of a period (or a change) beginning at `period_start`."""
        return self.active_at(period_start)


def discount_active_at(starts_at, ends_at, instant) -> bool:
    """The one coverage rule (preview, immediate billing, the billing run): a discount applies to a line when it is
    active at the instant the line's charge begins — `starts_at <= instant < ends_at` (no end: forever)."""
    return starts_at <= instant and (ends_at is None or instant < ends_at)
