"""Back-office roles, part 6: billing staff run and download accounting exports (and only they, with superusers);
support agents look after webhook endpoints (register, test, rotate, disable) and resend deliveries."""

from django.db import migrations

from portal.migrations._group_grants import grant_to_groups, revoke_from_groups

SUPPORT = "Support agents"
BILLING = "Billing staff"

GRANTS = {
    SUPPORT: [
        ("subscriptions", "webhookendpoint", "view"),
        ("subscriptions", "webhookendpoint", "add"),
        ("subscriptions", "webhookendpoint", "change"),
        ("subscriptions", "webhookdelivery", "view"),
        ("subscriptions", "webhookdelivery", "change"),
    ],
    BILLING: [("billing", "accountingexport", "view"), ("billing", "accountingexport", "run")],
}


def grant(apps, schema_editor) -> None:
    grant_to_groups(apps, GRANTS)


def revoke(apps, schema_editor) -> None:
    revoke_from_groups(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0008_credentials_and_refund_groups"),
        ("billing", "0005_accounting_exports"),
        ("subscriptions", "0006_webhooks_outbox"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
