"""Billing profiles: who the invoice is addressed to, how the customer wants to be billed."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError as StdnumValidationError

from billing.exceptions import BillingFieldNotEditable, BillingProfileInvalid, TaxIdInvalid
from billing.models import BillingProfile, ChangeBillingMode
from billing.services.stripe_customers import stripe_customer_sync_enqueue
from subscriptions import policy
from subscriptions.models import ActorKind, Customer, User
from subscriptions.places import country_exists, country_name, subdivision_exists
from subscriptions.services.audit import audit_record

EU_MEMBER_STATES = frozenset(code.upper() for code in eu_vat.MEMBER_STATES if code != "xi") | {"GR"}
# Countries whose tax location needs a region (state/province) to find the rate.
REGION_REQUIRED = frozenset({"US", "CA"})
EDITABLE_FIELDS = (
    "legal_name",
    "address_line1",
    "address_line2",
    "city",
    "region",
    "postal_code",
    "country",
    "billing_emails",
    "standing_po_number",
    "requires_po",
    "tax_id",
    "payment_terms_days",
    "invoice_language",
    "currency",
    "change_billing_mode",
    # Billing staff only (the admin): the portal and API forms do not offer them.
    "e_invoicing",
    "buyer_reference",
)
# Agreed with billing staff, never set by the customer (subscriptions/policy.py `billing.edit_terms`).
STAFF_ONLY_FIELDS = ("payment_terms_days", "currency")
CUSTOMER_EDITABLE_FIELDS = tuple(name for name in EDITABLE_FIELDS if name not in STAFF_ONLY_FIELDS)


def vat_country(tax_id: str) -> str:
    """The member state of an EU VAT number ("EL" is Greece's prefix)."""
    prefix = tax_id[:2].upper()
    return "GR" if prefix == "EL" else prefix


def tax_id_normalize(*, tax_id: str, country: str) -> str:
    """Compact and validate `tax_id` for `country` with python-stdnum; raise TaxIdInvalid with a readable message.

    EU member states: a VAT number (prefix + format + checksum), prefixed with the country code if missing, and
    its prefix must be the billing country. Other countries: the country's VAT/tax-number module if stdnum has one;
    otherwise a sanity check only.
    """
    raw = (tax_id or "").strip()
    if not raw:
        return ""
    country = (country or "").upper()
    if country in EU_MEMBER_STATES:
        candidate = re.sub(r"[\s.\-/]", "", raw).upper()
        prefix = "EL" if country == "GR" else country
        if candidate[:2].isdigit():
            candidate = prefix + candidate
        try:
            compact = eu_vat.validate(candidate)
        except StdnumValidationError as exc:
            raise TaxIdInvalid(f"{raw} is not a valid EU VAT number: {_stdnum_reason(exc)}")
        if vat_country(compact) != country:
            raise TaxIdInvalid(
                f"{raw} is a VAT number of {vat_country(compact)}, but the billing country is {country}."
            )
        return compact
    module = None
    for name in ("vat", "ein", "tin", "abn", "bn"):
        try:
            module = get_cc_module(country.lower(), name)
        except (ImportError, ValueError):
            module = None
        if module is not None:
            break
    if module is not None:
        try:
            return module.validate(raw)
        except StdnumValidationError as exc:
            raise TaxIdInvalid(f"{raw} is not a valid tax ID for {country}: {_stdnum_reason(exc)}")
    if not re.fullmatch(r"[A-Za-z0-9 .\-/]{4,40}", raw):
        raise TaxIdInvalid(f"{raw} does not look like a tax ID (letters, digits, spaces, . - / only).")
    return raw


def _stdnum_reason(exc: StdnumValidationError) -> str:
    return {
        "InvalidChecksum": "the check digit is wrong — please re-check the number",
        "InvalidLength": "it has the wrong number of characters",
        "InvalidFormat": "it has the wrong format",
        "InvalidComponent": "its country prefix or a part of it is not valid",
    }.get(type(exc).__name__, str(exc).rstrip("."))


def billing_profile_get_or_create(*, customer: Customer) -> BillingProfile:
    """The customer's profile; created on first use from the customer's legal name, country, region and currency."""
    profile = BillingProfile.objects.filter(customer=customer).first()
    if profile is not None:
        return profile
    with transaction.atomic():
        profile, _ = BillingProfile.objects.get_or_create(
            customer=customer,
            defaults={
                "legal_name": customer.legal_name or customer.name,
                "country": customer.country,
                "region": customer.region,
                "currency": customer.currency,
            },
        )
    return profile


def billing_profile_validate(*, data: dict) -> dict:
    """Clean and check profile fields; raise BillingProfileInvalid (with `.field`) on the first problem found."""
    cleaned = dict(data)
    for name in ("legal_name", "address_line1", "address_line2", "city", "region", "postal_code", "standing_po_number"):
        if name in cleaned:
            cleaned[name] = (cleaned[name] or "").strip()
    if "country" in cleaned:
        cleaned["country"] = (cleaned["country"] or "").strip().upper()
        if cleaned["country"] and not country_exists(cleaned["country"]):
            raise BillingProfileInvalid("Country must be a two-letter ISO code, e.g. US or DE.", field="country")
    if "region" in cleaned:
        # Checked against the country by billing_profile_update, which knows the stored one for a partial update.
        cleaned["region"] = cleaned["region"].upper()
    if "billing_emails" in cleaned:
        emails = cleaned["billing_emails"]
        if isinstance(emails, str):
            emails = re.split(r"[,;\s]+", emails)
        emails = [e.strip().lower() for e in emails if e and e.strip()]
        for email in emails:
            try:
                validate_email(email)
            except ValidationError:
                raise BillingProfileInvalid(f"{email} is not a valid e-mail address.", field="billing_emails")
        cleaned["billing_emails"] = list(dict.fromkeys(emails))
    if "payment_terms_days" in cleaned:
        try:
            days = int(cleaned["payment_terms_days"])
        except (TypeError, ValueError):
            raise BillingProfileInvalid("Payment terms must be a whole number of days.", field="payment_terms_days")
        if not 0 <= days <= 365:
            raise BillingProfileInvalid("Payment terms must be between 0 and 365 days.", field="payment_terms_days")
        cleaned["payment_terms_days"] = days
    if "currency" in cleaned:
        from django.conf import settings

        cleaned["currency"] = (cleaned["currency"] or "").upper()
        if cleaned["currency"] not in settings.ENABLED_CURRENCIES:
            raise BillingProfileInvalid(
                f"Invoices can be issued in {', '.join(settings.ENABLED_CURRENCIES)} only.", field="currency"
            )
    if "change_billing_mode" in cleaned and cleaned["change_billing_mode"] not in ChangeBillingMode.values:
        raise BillingProfileInvalid(
            "Choose whether changes are invoiced now or added to the next invoice.", field="change_billing_mode"
        )
    if "buyer_reference" in cleaned:
        cleaned["buyer_reference"] = (cleaned["buyer_reference"] or "").strip()[:100]
    if "e_invoicing" in cleaned:
        cleaned["e_invoicing"] = bool(cleaned["e_invoicing"])
    if "invoice_language" in cleaned and cleaned["invoice_language"] not in {"en", "de", "fr", "es"}:
        raise BillingProfileInvalid(
            "Invoices are available in English, German, French or Spanish.", field="invoice_language"
        )
    return cleaned


def e_invoice_applies(*, profile: BillingProfile | None) -> bool:
    """Whether this customer's invoices and credit notes are Factur-X (EN 16931) e-invoices: an EU business customer
    (billing country in the EU, a VAT ID that passed validation), e-invoicing on for the installation, and not
    switched off for the customer by billing staff (docs/billing-rules.md, "E-invoices")."""
    from django.conf import settings

    return bool(
        getattr(settings, "E_INVOICING_ENABLED", False)
        and profile is not None
        and profile.e_invoicing
        and (profile.country or "").upper() in EU_MEMBER_STATES
        and profile.tax_id
        and profile.tax_id_valid
    )


def billing_address_problems(*, profile: BillingProfile | None) -> list[str]:
    """What is missing for a valid tax location and postal address (empty list = fine). Messages are specific."""
    if profile is None:
        return ["No billing profile: add the legal name and billing address."]
    problems = []
    if not profile.legal_name:
        problems.append("the legal name")
    if not profile.address_line1:
        problems.append("the street address")
    if not profile.city:
        problems.append("the city")
    if not profile.postal_code:
        problems.append("the postal code")
    if not profile.country:
        problems.append("the country")
    elif profile.country in REGION_REQUIRED and not profile.region:
        problems.append("the state/province (needed to determine sales tax)")
    if not problems:
        return []
    return [f"The billing address is incomplete: add {', '.join(problems)}."]


def billing_profile_update(
    *, customer: Customer, actor: User | None = None, actor_kind: str | None = None, **fields
) -> BillingProfile:
    """Update the customer's billing profile. Validates everything first (nothing is written on error), validates
    the tax ID with python-stdnum against the billing country, and records an audit event with before/after. When
    something changed, the customer's Stripe customer is updated after commit (`stripe_customer_sync_enqueue`).

    Payment terms and currency (`STAFF_ONLY_FIELDS`) are changed only by staff allowed `billing.edit_terms` (or by
    the system: no actor and no `actor_kind`, i.e. sign-up and demo data), whatever surface calls; a customer sending
    the stored value back unchanged (a GET-then-PATCH round trip) is not refused.

    Does not touch issued invoices (they copied the old details); drafts pick up the new details when recomputed.
    """
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise BillingProfileInvalid(f"Unknown billing profile field(s): {', '.join(sorted(unknown))}.")
    cleaned = billing_profile_validate(data=fields)
    if actor is None:
        staff_terms = actor_kind in (None, ActorKind.SYSTEM)
    else:
        staff_terms = policy.staff_allows(actor, policy.Action.BILLING_EDIT_TERMS, in_admin=True)
    with transaction.atomic():
        profile = billing_profile_get_or_create(customer=customer)
        profile = BillingProfile.objects.select_for_update().get(pk=profile.pk)
        if not staff_terms:
            for name in STAFF_ONLY_FIELDS:
                if name in cleaned and cleaned[name] != getattr(profile, name):
                    what = "payment terms" if name == "payment_terms_days" else "the invoice currency"
                    raise BillingFieldNotEditable(
                        f"Only our billing team can change {what}; contact them to agree a change.", field=name
                    )
        new_country = cleaned.get("country")
        if new_country and "region" not in cleaned and not subdivision_exists(new_country, profile.region or "-"):
            # The stored state belongs to the old country: a new country given without a state clears it.
            cleaned["region"] = ""
        before = {name: getattr(profile, name) for name in cleaned}
        for name, value in cleaned.items():
            setattr(profile, name, value)
        if "tax_id" in cleaned or "country" in cleaned:
            profile.tax_id = tax_id_normalize(tax_id=profile.tax_id, country=profile.country)
            profile.tax_id_valid = bool(profile.tax_id)
        # A state is an ISO 3166-2 subdivision of the (new or stored) country.
        if "region" in cleaned and profile.region and not subdivision_exists(profile.country, profile.region):
            raise BillingProfileInvalid(
                f"{profile.region} is not a state or province of {country_name(profile.country)} "
                "(ISO 3166-2, e.g. CA).",
                field="region",
            )
        profile.save()
        after = {name: getattr(profile, name) for name in cleaned}
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        if changed:
            audit_record(
                customer=customer,
                actor=actor,
                actor_kind=actor_kind,
                action="billing.profile_updated",
                obj=profile,
                summary=f"Billing details updated ({', '.join(sorted(changed))})",
                before={k: before[k] for k in changed},
                after=changed,
            )
            # Stripe's copy of the name, e-mail and address follows (docs/payments.md; no-op without Stripe).
            stripe_customer_sync_enqueue(customer_id=customer.pk)
    return profile
