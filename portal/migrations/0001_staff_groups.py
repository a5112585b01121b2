"""Back-office roles as data: the "Support agents" and "Billing staff" groups and their model permissions.

A "change" permission on a model whose admin shows only read-only fields means "may run the staff actions on it"
(the admin calls services; nobody edits money or status fields). Billing models get their permissions in a later
migration, once they exist. Superusers need no group: they have every permission.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT = "Support agents"
BILLING = "Billing staff"

READ_ONLY_SUBSCRIPTIONS = [
    "user",
    "customer",
    "membership",
    "invitation",
    "sku",
    "package",
    "packagecomponent",
    "price",
    "subscription",
    "subscriptionaddon",
    "scheduledchange",
    "seatledgerentry",
    "seatassignment",
    "subscriptionchange",
    "auditevent",
    "staffnote",
]

GRANTS = {
    SUPPORT: [("subscriptions", model, "view") for model in READ_ONLY_SUBSCRIPTIONS]
    + [
        # Staff actions on the customer's behalf: change seats/package, extend a trial, resend an invitation.
        ("subscriptions", "subscription", "change"),
        ("subscriptions", "invitation", "change"),
        ("subscriptions", "staffnote", "add"),
    ],
    BILLING: [("subscriptions", model, "view") for model in READ_ONLY_SUBSCRIPTIONS]
    + [
        ("subscriptions", "staffnote", "add"),
    ],
}


def _ensure_permissions(apps) -> None:
    # Permissions are normally created after the whole migrate run (post_migrate); create them now so this
    # migration can grant them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def grant(apps, schema_editor) -> None:
    _ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, grants in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for app_label, model, action in grants:
            permission = Permission.objects.get(
                content_type__app_label=app_label, content_type__model=model, codename=f"{action}_{model}"
            )
            group.permissions.add(permission)


def revoke(apps, schema_editor) -> None:
    Group = apps.get_model("auth", "Group")
    Group.objects.filter(name__in=list(GRANTS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("subscriptions", "0002_staffnote"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
