"""Back-office roles, part 4: payments. Both roles read payments, refunds, Stripe customers, cards and dunning;
billing staff also record bank transfers ("add payment") and retry failed Stripe webhook events."""

from django.db import migrations

from portal.migrations._group_grants import grant_to_groups, revoke_from_groups

SUPPORT = "Support agents"
BILLING = "Billing staff"

READ_BOTH = ["payment", "refund", "stripecustomer", "paymentmethod", "dunningcase"]

GRANTS = {
    SUPPORT: [("billing", model, "view") for model in READ_BOTH],
    BILLING: [("billing", model, "view") for model in READ_BOTH]
    + [
        ("billing", "payment", "add"),
        ("billing", "stripeevent", "view"),
        ("billing", "stripeevent", "change"),
    ],
}


def grant(apps, schema_editor) -> None:
    grant_to_groups(apps, GRANTS)


def revoke(apps, schema_editor) -> None:
    revoke_from_groups(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0005_provisioning_groups"),
        ("billing", "0003_merge_0002_invoice_change_links_0002_payments"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
