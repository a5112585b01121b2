"""Back-office roles, part 3: provisioning. Everyone reads entitlements and runs; support may retry provisioning
(the "change entitlement" permission: the admin stays read-only and the action calls entitlements_retry)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

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
        ("portal", "0004_effort_survey"),
        ("subscriptions", "0003_provisioning"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
