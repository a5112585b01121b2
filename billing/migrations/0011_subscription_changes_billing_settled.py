"""Mark the changes billing has already billed (a proration invoice or pending items) as settled, so the billing
run's safety net, which now reads only unsettled changes with an amount, does not revisit them. A change with an
amount and neither is left unsettled: the next billing run bills it (or finds nothing to bill) and settles it."""

from django.db import migrations
from django.db.models import Exists, F, OuterRef, Q


def forwards(apps, schema_editor):
    SubscriptionChange = apps.get_model("subscriptions", "SubscriptionChange")
    Invoice = apps.get_model("billing", "Invoice")
    PendingInvoiceItem = apps.get_model("billing", "PendingInvoiceItem")
    SubscriptionChange.objects.filter(billing_settled_at__isnull=True).filter(
        Q(Exists(Invoice.objects.filter(subscription_change_id=OuterRef("pk"))))
        | Q(Exists(PendingInvoiceItem.objects.filter(subscription_change_id=OuterRef("pk"))))
    ).update(billing_settled_at=F("created_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0010_discount_starts_at_first_covered_period"),
        ("subscriptions", "0011_subscription_change_billing_settled"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
