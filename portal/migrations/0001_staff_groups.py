"""Back-office roles as data: the "Support agents" and "Billing staff" groups and their model permissions.

A "change" permission on a model whose admin shows only read-only fields means "may run the staff actions on it"
(the admin calls services; nobody edits money or status fields). Billing models get their permissions in a later
migration, once they exist. Superusers need no group: they have every permission.
"""

from django.db import migrations

from portal.migrations._group_grants import grant_to_groups

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


def grant(apps, schema_editor) -> None:
    grant_to_groups(apps, GRANTS)


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
