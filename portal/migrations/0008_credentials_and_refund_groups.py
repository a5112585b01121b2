"""Back-office roles, part 5: API credentials and refunds. Support agents see customers' API keys and may revoke one
(a "change" permission on a read-only admin means "may run its staff actions"); billing staff record refunds they paid
by bank transfer ("add refund"). Service tokens stay with superusers."""

from django.db import migrations

from portal.migrations._group_grants import grant_to_groups, revoke_from_groups

SUPPORT = "Support agents"
BILLING = "Billing staff"

GRANTS = {
    SUPPORT: [("portal", "apikey", "view"), ("portal", "apikey", "change")],
    BILLING: [("billing", "refund", "add")],
}


def grant(apps, schema_editor) -> None:
    grant_to_groups(apps, GRANTS)


def revoke(apps, schema_editor) -> None:
    revoke_from_groups(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0007_effort_survey_one_signup_answer"),
        ("billing", "0004_credit_note_refund_due"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
