"""Back-office roles, part 4: payments. Both roles read payments, refunds, Stripe customers, cards and dunning;
billing staff also record bank transfers ("add payment") and retry failed Stripe webhook events."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, grants in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for app_label, model, action in grants:
            group.permissions.add(
                Permission.objects.get(
                    content_type__app_label=app_label, content_type__model=model, codename=f"{action}_{model}"
                )
            )


def revoke(apps, schema_editor) -> None:
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, grants in GRANTS.items():
        for group in Group.objects.filter(name=group_name):
            for app_label, model, action in grants:
                group.permissions.remove(
                    *Permission.objects.filter(
                        content_type__app_label=app_label, content_type__model=model, codename=f"{action}_{model}"
                    )
                )


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0005_provisioning_groups"),
        ("billing", "0003_merge_0002_invoice_change_links_0002_payments"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
