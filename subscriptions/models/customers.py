"""The buying organisation and the people who act for it."""

from django.conf import settings
from django.db import models


class Customer(models.Model):
    """A buying organisation. Its journey stage is derived (subscriptions.selectors), never typed in."""

    name = models.CharField(max_length=200)
    legal_name = models.CharField(max_length=200, blank=True)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2; drives tax.")
    region = models.CharField(max_length=10, blank=True, help_text="State/province code, e.g. CA; drives tax.")
    currency = models.CharField(max_length=3, default="USD")
    billing_anchor_day = models.PositiveSmallIntegerField(
        default=1, help_text="Day of the month renewals fall on (1-28)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(billing_anchor_day__gte=1, billing_anchor_day__lte=28),
                name="customer_anchor_day_1_28",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    BILLING_ADMIN = "billing_admin", "Billing admin"
    MEMBER = "member", "Member"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["customer_id", "user_id"]
        constraints = [models.UniqueConstraint(fields=["user", "customer"], name="membership_unique_user_customer")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.customer} ({self.get_role_display()})"


class Invitation(models.Model):
    """An e-mailed invitation; the link carries a signed, expiring token (see services/members.py)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set when an API key made the invitation ("API key ck_1a2b3c4d (CI)"); `invited_by` is then empty: the key, not
    # whoever created it, invited.
    invited_by_key = models.CharField(max_length=120, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.customer}"
