"""Back-office roles, part 6: discounts (issue 22). Billing staff create coupons and promotion codes and attach
coupons to customers (through billing.services.discounts); support agents see coupons, codes and redemptions."""

from django.db import migrations

from portal.migrations._group_grants import grant_to_groups, revoke_from_groups

SUPPORT = "Support agents"
BILLING = "Billing staff"

MODELS = ["coupon", "couponamount", "promotioncode", "discount"]

GRANTS = {
    SUPPORT: [("billing", model, "view") for model in MODELS],
    BILLING: [("billing", model, "view") for model in MODELS]
    + [("billing", model, action) for model in ("coupon", "couponamount", "promotioncode") for action in ("add", "change")]
    + [("billing", "discount", "add")],
}


def grant(apps, schema_editor) -> None:
    grant_to_groups(apps, GRANTS)


def revoke(apps, schema_editor) -> None:
    revoke_from_groups(apps, GRANTS)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0008_credentials_and_refund_groups"),
        ("billing", "0005_discounts_and_promotion_codes"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
