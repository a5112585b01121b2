"""Product activity the product itself reports (POST /api/v1/usage/): who used what, per UTC day."""

from django.conf import settings
from django.db import models

from subscriptions.models.customers import Customer


class UsageKind(models.TextChoices):
    ACTIVE = "active", "Daily active use"
    FEATURE = "feature", "Feature use"


class UsageRecord(models.Model):
    """One (customer, user or none, day, kind, feature) fact. The natural key makes a resubmission replace the
    count instead of adding to it, so a product may replay a day's report safely."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="usage_records")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="usage_records"
    )
    day = models.DateField()
    kind = models.CharField(max_length=16, choices=UsageKind.choices)
    feature = models.CharField(max_length=64, blank=True, default="")
    count = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "id"]
        indexes = [models.Index(fields=["customer", "day"], name="usage_customer_day")]
        constraints = [
            # Two partial constraints because NULL users are distinct in a plain unique index.
            models.UniqueConstraint(
                fields=["customer", "user", "day", "kind", "feature"],
                condition=models.Q(user__isnull=False),
                name="usage_unique_per_user",
            ),
            models.UniqueConstraint(
                fields=["customer", "day", "kind", "feature"],
                condition=models.Q(user__isnull=True),
                name="usage_unique_per_customer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.day} {self.kind} {self.feature or '-'} ×{self.count}"
