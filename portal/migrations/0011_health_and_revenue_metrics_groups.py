"""Back-office roles, part 7: the staff health and revenue-metrics pages (issue 20).

Both groups see customer health (the at-risk list, its explanation and CSV); support agents, who look after
customers, change the score's weights; billing staff see the revenue metrics (MRR, retention, billing quality).
`RevenueMetrics` has no table: it only holds the `portal.view_revenuemetrics` permission.
"""

from django.db import migrations, models

from portal.migrations._group_grants import grant_to_groups, revoke_from_groups

SUPPORT = "Support agents"
BILLING = "Billing staff"

GRANTS = {
    SUPPORT: [
        ("billing", "customerhealthsnapshot", "view"),
        ("billing", "healthweights", "view"),
        ("billing", "healthweights", "add"),
    ],
    BILLING: [
        ("billing", "customerhealthsnapshot", "view"),
        ("billing", "healthweights", "view"),
        ("portal", "revenuemetrics", "view"),
    ],
}


def grant(apps, schema_editor) -> None:
    grant_to_groups(apps, GRANTS)


def revoke(apps, schema_editor) -> None:
    revoke_from_groups(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0010_merge_parallel_work"),
        ("billing", "0007_customer_health"),
    ]

    operations = [
        migrations.CreateModel(
            name="RevenueMetrics",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
            ],
            options={
                "verbose_name_plural": "revenue metrics",
                "managed": False,
                "default_permissions": ("view",),
            },
        ),
        migrations.RunPython(grant, revoke),
    ]
