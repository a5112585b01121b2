"""Credentials and request bookkeeping for the REST API.

Secrets are never stored: only the SHA-256 of a high-entropy random secret plus a short visible prefix, so a leaked
database does not leak usable keys and a customer can still tell their keys apart.
"""

from django.conf import settings
from django.db import models

from subscriptions.models import Customer


class ApiKeyRole(models.TextChoices):
    READ_ONLY = "read_only", "Read-only"
    BILLING = "billing", "Billing"
    ADMIN = "admin", "Admin"


class ApiKey(models.Model):
    """A customer's API key: scoped to one customer and one role; revocable; last use recorded."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=20, choices=ApiKeyRole.choices, default=ApiKeyRole.READ_ONLY)
    prefix = models.CharField(max_length=24, unique=True, help_text="Shown to people; not secret.")
    key_hash = models.CharField(max_length=64, unique=True, help_text="sha256 hex of the whole key.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ServiceToken(models.Model):
    """A token for the product being sold: reads entitlements of every customer (scope), revocable."""

    class Scope(models.TextChoices):
        ENTITLEMENTS_READ = "entitlements:read", "Read entitlements"
        USAGE_WRITE = "usage:write", "Report product usage"

    name = models.CharField(max_length=100)
    scopes = models.JSONField(default=list, help_text='e.g. ["entitlements:read"]')
    prefix = models.CharField(max_length=24, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


class AccessToken(models.Model):
    """A short-lived bearer token for one user, from POST /api/v1/auth/token/ (scripts, the command line)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_access_tokens")
    prefix = models.CharField(max_length=24, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The user's session auth hash (an HMAC of their password hash) when the token was issued: a password change or
    # reset by any path (portal, admin, shell) changes it, which ends the token at once, as it ends sessions.
    credential_fingerprint = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Token {self.prefix}… for {self.user}"


class IdempotencyRecord(models.Model):
    """The first response to a state-changing POST, replayed for the same (principal, Idempotency-Key) for 24 h."""

    principal = models.CharField(max_length=64, help_text="e.g. user:12, key:5")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["principal", "key"], name="idempotency_unique_principal_key")]

    def __str__(self) -> str:
        return f"{self.principal} {self.key}"


class EffortSurveyResponse(models.Model):
    """The one-question effort survey after a self-service change or sign-up ("How easy was that?" 1–7), for
    customer health.

    One answer per person per change (or per sign-up), so a double-submit cannot
    skew the score.
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="effort_survey_responses")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    change_kind = models.CharField(max_length=30, help_text="e.g. seats, package, cancel, signup.")
    subscription_change = models.ForeignKey(
        "subscriptions.SubscriptionChange", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    score = models.PositiveSmallIntegerField(help_text="1 = very hard … 7 = very easy.")
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(score__gte=1, score__lte=7), name="effort_score_1_to_7"),
            models.UniqueConstraint(
                fields=["user", "subscription_change"],
                condition=models.Q(subscription_change__isnull=False),
                name="effort_one_answer_per_user_change",
            ),
            # Sign-up is not a SubscriptionChange: one answer per person per customer they signed up.
            models.UniqueConstraint(
                fields=["user", "customer"],
                condition=models.Q(change_kind="signup"),
                name="effort_one_signup_answer_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.score}/7 after {self.change_kind}"


class RevenueMetrics(models.Model):
    """No table: the holder of the permission to see the revenue metrics page (`portal.view_revenuemetrics`,
    subscriptions/policy.py `metrics.view`), which spans every customer and so belongs to no one model."""

    class Meta:
        managed = False
        default_permissions = ("view",)
        verbose_name_plural = "revenue metrics"

    def __str__(self) -> str:
        return "Revenue metrics"
