"""Customer health (issue 20): the staff-configured weights and one snapshot per computation (history for the trend)."""

from django.conf import settings
from django.db import models

from subscriptions.models import Customer


class HealthWeights(models.Model):
    """A weight set, append-only: the newest row is in force, so who changed the weights, and when, stays visible.
    Validated by billing.health.formulas.weights_problems (non-negative, not all zero) in the service that saves it."""

    seat_adoption = models.PositiveSmallIntegerField(default=25)
    activity = models.PositiveSmallIntegerField(default=20)
    payment = models.PositiveSmallIntegerField(default=25)
    enablement = models.PositiveSmallIntegerField(default=10)
    friction = models.PositiveSmallIntegerField(default=10)
    effort = models.PositiveSmallIntegerField(default=10)
    at_risk_below = models.PositiveSmallIntegerField(default=50, help_text="A score below this is at risk.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "health weights"

    def __str__(self) -> str:
        return f"Health weights #{self.pk}"


class CustomerHealthSnapshot(models.Model):
    """The score, its components, the facts behind them and the explanation in words, as computed at one moment."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="health_snapshots")
    computed_at = models.DateTimeField()
    score = models.PositiveSmallIntegerField(null=True, blank=True, help_text="None when no component had facts.")
    components = models.JSONField(default=dict)
    facts = models.JSONField(default=dict)
    weights = models.JSONField(default=dict)
    explanation = models.TextField(blank=True)
    stage = models.CharField(max_length=20, blank=True, help_text="The journey stage derived at this computation.")

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["customer", "-computed_at"], name="health_customer_latest")]

    def __str__(self) -> str:
        return f"Health of {self.customer_id} at {self.computed_at:%Y-%m-%d}: {self.score}"


class JourneyStageChange(models.Model):
    """A customer moved from one journey stage to another (recorded by customer_health_compute), with its date."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="journey_stage_changes")
    from_stage = models.CharField(max_length=20, blank=True)
    to_stage = models.CharField(max_length=20)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["customer", "-changed_at"], name="stage_change_customer")]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_stage or '-'} → {self.to_stage} at {self.changed_at:%Y-%m-%d}"
