"""`manage.py check` warnings for e-invoicing: the seller data every EN 16931 e-invoice states (docs/billing-rules.md,
"E-invoices"). An incomplete seller would not stop the site, but every e-invoice would be held at issue."""

from django.conf import settings
from django.core.checks import Warning, register

REQUIRED = {
    "legal_name": "SELLER_LEGAL_NAME",
    "street": "SELLER_STREET",
    "city": "SELLER_CITY",
    "postal_code": "SELLER_POSTAL_CODE",
    "country": "SELLER_COUNTRY",
    "vat_id": "SELLER_VAT_ID",
    "iban": "SELLER_IBAN",
    "bic": "SELLER_BIC",
}


def seller_einvoice_problems(seller: dict) -> list[str]:
    """What is missing or malformed in `seller` for EN 16931 (empty = complete). IBAN and BIC are checked with
    schwifty (checksum, country format, BIC structure), the VAT ID with python-stdnum."""
    from schwifty import BIC, IBAN
    from schwifty.exceptions import SchwiftyException
    from stdnum.eu import vat as eu_vat

    problems = [f"{setting} is not set." for key, setting in REQUIRED.items() if not (seller.get(key) or "").strip()]
    if seller.get("iban"):
        try:
            IBAN(seller["iban"])
        except SchwiftyException as exc:
            problems.append(f"SELLER_IBAN is not a valid IBAN: {exc}.")
    if seller.get("bic"):
        try:
            BIC(seller["bic"])
        except SchwiftyException as exc:
            problems.append(f"SELLER_BIC is not a valid BIC: {exc}.")
    if seller.get("vat_id") and not eu_vat.is_valid(seller["vat_id"]):
        problems.append(f"SELLER_VAT_ID {seller['vat_id']} is not a valid EU VAT number.")
    country = (seller.get("country") or "").strip()
    if country and len(country) != 2:
        problems.append("SELLER_COUNTRY must be a two-letter ISO code.")
    return problems


@register()
def seller_einvoice_check(app_configs=None, **kwargs):
    if not getattr(settings, "E_INVOICING_ENABLED", False):
        return []
    return [
        Warning(
            f"E-invoicing is enabled but the seller is incomplete: {problem}",
            hint="Set it in the environment, or E_INVOICING_ENABLED=0 to send plain PDFs only. Until then every "
            "e-invoice is held at issue with 'e-invoice invalid'.",
            id="billing.W001",
        )
        for problem in seller_einvoice_problems(dict(settings.SELLER))
    ]
