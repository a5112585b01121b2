"""Store each subscription's billing anchor (issue 14) and fill it from the original start.

Before, every period end was computed from the previous one (31 Jan → 28 Feb → 28 Mar …). The anchor is the start
of the first paid period: the trial end for a subscription that started with a trial, otherwise the first seat
ledger entry (when the customer subscribed). When the current period does not lie on that anchor's schedule (its
term was restarted, e.g. a move from monthly to annual billing), the current period start is the anchor. The current
period itself is left as it is; from its end on, boundaries follow the anchor.
"""

from django.db import migrations, models


def _on_schedule(anchor, start, interval) -> bool:
    """Whether `start` can be a boundary of `anchor`: not before it, same time of day, same month for annual plans,
    and on the anchor's day or earlier (a short month clamped it, or the old rule let it drift: 31 Jan → 28 Feb →
    28 Mar all came from a 31 January anchor)."""
    if start < anchor or start.time() != anchor.time():
        return False
    if interval == "year" and start.month != anchor.month:
        return False
    return start.day <= anchor.day


def fill_anchor(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    SeatLedgerEntry = apps.get_model("subscriptions", "SeatLedgerEntry")
    for subscription in Subscription.objects.filter(billing_anchor__isnull=True).iterator():
        first = (
            SeatLedgerEntry.objects.filter(subscription_id=subscription.pk)
            .order_by("effective_at", "pk")
            .values_list("effective_at", flat=True)
            .first()
        )
        if subscription.status == "trialing":
            # The paid periods start when the trial ends, and are anchored there.
            Subscription.objects.filter(pk=subscription.pk).update(billing_anchor=subscription.current_period_end)
            continue
        anchor = subscription.trial_end or first or subscription.current_period_start
        if not _on_schedule(anchor, subscription.current_period_start, subscription.interval):
            anchor = subscription.current_period_start
        Subscription.objects.filter(pk=subscription.pk).update(billing_anchor=anchor)


class Migration(migrations.Migration):
    dependencies = [("subscriptions", "0005_auditevent_occurred_at")]

    operations = [
        migrations.AddField(
            model_name="subscription",
            name="billing_anchor",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(fill_anchor, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="subscription",
            name="billing_anchor",
            field=models.DateTimeField(
                help_text=(
                    "Every period boundary is this instant moved a whole number of intervals on, clamped to the "
                    "month's last day (31 Jan → 28/29 Feb → 31 Mar). Set at sign-up, at trial end and when a new "
                    "annual/monthly term starts; see subscriptions/periods.py."
                )
            ),
        ),
    ]
