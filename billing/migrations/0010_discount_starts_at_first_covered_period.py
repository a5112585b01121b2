"""Discounts follow the one coverage rule (docs/billing-rules.md, "Discounts"): a discount applies to a line when it is
active at the instant the line's charge begins, and one redeemed before its first covered period was invoiced is
active from that period's start. Rows made before the rule started at the redemption instant; move those to the start
of the period they were applied to (an invoice line proves it) or, while the current period is still not invoiced,
to its start. Discounts redeemed after their period was invoiced keep the redemption instant."""

from django.db import migrations


def forwards(apps, schema_editor):
    Discount = apps.get_model("billing", "Discount")
    InvoiceLine = apps.get_model("billing", "InvoiceLine")
    Invoice = apps.get_model("billing", "Invoice")
    for discount in Discount.objects.select_related("subscription").iterator():
        starts_at = discount.starts_at
        applied = (
            InvoiceLine.objects.filter(
                discount_id=discount.pk,
                invoice__kind="regular",
                invoice__period_start__lt=starts_at,
                invoice__period_end__gt=starts_at,
            )
            .order_by("invoice__period_start")
            .values_list("invoice__period_start", flat=True)
            .first()
        )
        if applied is not None:
            starts_at = applied
        subscription = discount.subscription
        if (
            subscription is not None
            and subscription.status != "trialing"
            and subscription.current_period_start < starts_at < subscription.current_period_end
            and not Invoice.objects.filter(
                subscription_id=subscription.pk, kind="regular", period_start=subscription.current_period_start
            ).exists()
        ):
            starts_at = subscription.current_period_start
        if starts_at != discount.starts_at:
            Discount.objects.filter(pk=discount.pk).update(starts_at=starts_at)


class Migration(migrations.Migration):
    dependencies = [("billing", "0009_merge_rebill_and_revenue_metrics")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
