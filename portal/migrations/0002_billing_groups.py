"""Back-office roles, part 2: permissions on the billing models (invoices, credit notes, tax, billing profiles).

Billing staff do everything about invoices, credit notes, tax rates and exemptions (through the admin's actions,
which call billing services); support agents read invoices and credit notes only, and never see tax exemptions
(certificates) or tax rates. Both may resend an invoice e-mail (a custom permission created here).
"""

from django.db import migrations

from portal.migrations._group_grants import ensure_permissions, grant_to_groups

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


def grant(apps, schema_editor) -> None:
    ensure_permissions(apps)
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    for app_label, model, action, name in CUSTOM:
        content_type = ContentType.objects.get(app_label=app_label, model=model)
        Permission.objects.get_or_create(
            content_type=content_type, codename=f"{action}_{model}", defaults={"name": name}
        )
    grant_to_groups(apps, GRANTS)


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
