"""Back-office roles, part 2: permissions on the billing models (invoices, credit notes, tax, billing profiles).

Billing staff do everything about invoices, credit notes, tax rates and exemptions (through the admin's actions,
which call billing services); support agents read invoices and credit notes only, and never see tax exemptions
(certificates) or tax rates. Both may resend an invoice e-mail (a custom permission created here).
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

SUPPORT = "Support agents"
BILLING = "Billing staff"

READ_BOTH = [
    "invoice",
    "invoiceline",
    "invoicetaxline",
    "invoicestatuschange",
    "creditnote",
    "creditnoteline",
    "billingprofile",
    "pendinginvoiceitem",
]

GRANTS = {
    SUPPORT: [("billing", model, "view") for model in READ_BOTH] + [("billing", "invoice", "send_email")],
    BILLING: [("billing", model, "view") for model in READ_BOTH]
    + [
        ("billing", "invoice", "send_email"),
        # Invoice actions: re-run checks, approve and issue, void, mark paid, write off.
        ("billing", "invoice", "change"),
        # Editing a draft's lines (the service refuses once issued).
        ("billing", "invoiceline", "add"),
        ("billing", "invoiceline", "change"),
        ("billing", "invoiceline", "delete"),
        ("billing", "creditnote", "add"),
        ("billing", "taxrate", "view"),
        ("billing", "taxrate", "add"),
        ("billing", "taxrate", "change"),
        ("billing", "taxexemption", "view"),
        ("billing", "taxexemption", "change"),
        ("billing", "exemptionstatuschange", "view"),
        ("billing", "billingprofile", "change"),
        ("billing", "invoicenumbersequence", "view"),
    ],
}

CUSTOM = [("billing", "invoice", "send_email", "Can resend an invoice e-mail to the customer")]


def _ensure_permissions(apps) -> None:
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for app_label, model, action, name in CUSTOM:
        content_type = ContentType.objects.get(app_label=app_label, model=model)
        Permission.objects.get_or_create(
            content_type=content_type, codename=f"{action}_{model}", defaults={"name": name}
        )


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
    Permission = apps.get_model("auth", "Permission")
    for group in Group.objects.filter(name__in=list(GRANTS)):
        group.permissions.remove(*Permission.objects.filter(content_type__app_label="billing"))


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0001_staff_groups"),
        ("billing", "0001_initial"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
