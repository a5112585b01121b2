"""The debounce marker of the event-driven health recompute (docs/metrics.md, "Recompute on events").

It lives in `subscriptions`, the lowest layer, because that is where the first events that move a score happen
(seats, members, provisioning); billing and portal services mark through the same service
(subscriptions/services/health_marks.py). The score itself is billing's; the recompute task is the portal's.
"""

from django.db import models

from subscriptions.models.customers import Customer


class HealthRecomputeMark(models.Model):
    """ "This customer's health score is out of date": at most one row per customer, so fifty events in a minute
    leave one row and queue one recompute. The recompute deletes the row before it reads the facts (a later event
    makes a new row and queues again); a row the broker never heard of is found by the sweep and the nightly run."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="+", primary_key=True)
    marked_at = models.DateTimeField(help_text="When the pending recompute was (last) queued.")
    reason = models.CharField(max_length=60, blank=True, help_text="The event that marked it, e.g. payment.failed.")

    class Meta:
        indexes = [models.Index(fields=["marked_at"], name="health_mark_marked_at")]

    def __str__(self) -> str:
        return f"Health of {self.customer_id} out of date since {self.marked_at:%Y-%m-%d %H:%M}"
