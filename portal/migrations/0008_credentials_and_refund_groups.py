"""Back-office roles, part 5: API credentials and refunds. Support agents see customers' API keys and may revoke one
(a "change" permission on a read-only admin means "may run its staff actions"); billing staff record refunds they paid
by bank transfer ("add refund"). Service tokens stay with superusers."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT = "Support agents"
BILLING = "Billing staff"

GRANTS = {
    SUPPORT: [("portal", "apikey", "view"), ("portal", "apikey", "change")],
    BILLING: [("billing", "refund", "add")],
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
        ("portal", "0007_effort_survey_one_signup_answer"),
        ("billing", "0004_credit_note_refund_due"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
