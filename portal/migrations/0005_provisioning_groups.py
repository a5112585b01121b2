"""Back-office roles, part 3: provisioning. Everyone reads entitlements and runs; support may retry provisioning
(the "change entitlement" permission: the admin stays read-only and the action calls entitlements_retry)."""

from django.db import migrations

from portal.migrations._group_grants import grant_to_groups, revoke_from_groups

SUPPORT = "Support agents"
BILLING = "Billing staff"

GRANTS = {
    SUPPORT: [
        ("subscriptions", "entitlement", "view"),
        ("subscriptions", "entitlement", "change"),
        ("subscriptions", "provisioningrun", "view"),
    ],
    BILLING: [
        ("subscriptions", "entitlement", "view"),
        ("subscriptions", "provisioningrun", "view"),
    ],
}


def grant(apps, schema_editor) -> None:
    grant_to_groups(apps, GRANTS)


def revoke(apps, schema_editor) -> None:
    revoke_from_groups(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0004_effort_survey"),
        ("subscriptions", "0003_provisioning"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
