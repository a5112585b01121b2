"""Revenue metrics (issue 20): monthly aggregates, stored and recomputed one month at a time.

Written only by billing.services.revenue_metrics.revenue_months_update (nightly beat task for the current and the
previous month, and the `revenue_metrics_backfill` command); read by metrics_summary in a constant number of
queries. Definitions: docs/metrics.md ("Revenue metrics").
"""

from django.db import models

from subscriptions.models import Customer


class RevenueMonth(models.Model):
    """One calendar month (UTC) in one currency: MRR at its last day, and the movements from the month before."""

    month = models.DateField(help_text="The 1st of the month.")
    currency = models.CharField(max_length=3)
    mrr_minor = models.BigIntegerField(default=0, help_text="MRR at the end of the month's last day.")
    arr_minor = models.BigIntegerField(default=0, help_text="12 × MRR.")
    new_minor = models.BigIntegerField(default=0)
    expansion_minor = models.BigIntegerField(default=0)
    contraction_minor = models.BigIntegerField(default=0, help_text="Negative or zero.")
    churned_minor = models.BigIntegerField(default=0, help_text="Negative or zero.")
    reactivation_minor = models.BigIntegerField(default=0)
    customers_start = models.PositiveIntegerField(default=0, help_text="Paying customers at the previous month-end.")
    customers_end = models.PositiveIntegerField(default=0, help_text="Paying customers at this month-end.")
    new_customers = models.PositiveIntegerField(default=0)
    churned_customers = models.PositiveIntegerField(default=0)
    reactivated_customers = models.PositiveIntegerField(default=0)
    # Trailing 12 months: the customers paying at the end of the month 12 months earlier.
    retention_start_minor = models.BigIntegerField(default=0, help_text="Their MRR 12 months earlier.")
    retention_net_minor = models.BigIntegerField(default=0, help_text="Their MRR now (NRR numerator).")
    retention_gross_minor = models.BigIntegerField(
        default=0, help_text="Their MRR now, each capped at its start (GRR numerator)."
    )
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["month", "currency"]
        constraints = [models.UniqueConstraint(fields=["month", "currency"], name="revenue_month_unique")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m} {self.currency}: MRR {self.mrr_minor}"


class RevenueCustomerMonth(models.Model):
    """A paying customer's MRR at a month-end (only rows with MRR > 0): the per-customer facts behind NRR, GRR and
    cohort retention, so the summary never recomputes them from subscriptions."""

    month = models.DateField(help_text="The 1st of the month.")
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="revenue_months")
    currency = models.CharField(max_length=3)
    mrr_minor = models.BigIntegerField()
    first_paid_month = models.DateField(help_text="The 1st of the first month the customer paid at its end (cohort).")

    class Meta:
        ordering = ["month", "customer_id"]
        constraints = [
            models.UniqueConstraint(fields=["month", "customer", "currency"], name="revenue_customer_month_unique")
        ]
        indexes = [models.Index(fields=["currency", "first_paid_month", "month"], name="revenue_cohort")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.month:%Y-%m}: {self.mrr_minor} {self.currency}"


class BillingQualityMonth(models.Model):
    """Billing quality of one calendar month (UTC), all currencies: right first time, holds, enablement times."""

    month = models.DateField(unique=True, help_text="The 1st of the month.")
    issued_invoices = models.PositiveIntegerField(default=0, help_text="Invoices issued in the month.")
    right_first_time = models.PositiveIntegerField(
        default=0, help_text="Of those, never corrected (no credit note, not voided)."
    )
    root_causes = models.JSONField(
        default=dict, help_text="{reason code: corrections} of the month's invoices, most frequent first."
    )
    held_invoices = models.PositiveIntegerField(default=0, help_text="Invoices created in the month ever held.")
    created_invoices = models.PositiveIntegerField(default=0, help_text="Invoices created in the month.")
    holds_by_check = models.JSONField(default=dict, help_text="{hold reason code: invoices it held}.")
    hold_release_median_seconds = models.PositiveIntegerField(null=True, blank=True)
    enablement_runs = models.PositiveIntegerField(default=0)
    enablement_p50_seconds = models.PositiveIntegerField(null=True, blank=True)
    enablement_p95_seconds = models.PositiveIntegerField(null=True, blank=True)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["month"]

    def __str__(self) -> str:
        return f"Billing quality {self.month:%Y-%m}"


class RevenueCohortMonth(models.Model):
    """Cohort retention cell: of the customers who first paid at the end of `cohort`, how many (and how much MRR)
    pay at the end of `month`. The row with month = cohort is the cohort's size."""

    currency = models.CharField(max_length=3)
    cohort = models.DateField(help_text="The 1st of the cohort's first paying month.")
    month = models.DateField(help_text="The 1st of the month measured.")
    customers = models.PositiveIntegerField(default=0)
    mrr_minor = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["currency", "cohort", "month"]
        constraints = [
            models.UniqueConstraint(fields=["currency", "cohort", "month"], name="revenue_cohort_month_unique")
        ]

    def __str__(self) -> str:
        return f"{self.currency} cohort {self.cohort:%Y-%m} at {self.month:%Y-%m}: {self.customers}"
