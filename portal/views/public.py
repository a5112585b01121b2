"""Public pages: pricing (packages side by side, monthly/annual with the annual saving) and self-serve sign-up."""

from django.conf import settings
from django.shortcuts import render

from billing.exceptions import BillingError
from billing.models import ExemptionType
from portal.services.signup import ExemptionDeclaration, signup_create, signup_default_seats
from portal.throttle import client_ip
from portal.views.account import SIGNUP_SURVEY_SESSION_KEY
from portal.views.billing_pages import _parse_date
from portal.views.offers import offers_for
from subscriptions.exceptions import SubscriptionError
from subscriptions.selectors import packages_public

CURRENCY_COUNTRIES = {"USD": "US", "EUR": "DE", "GBP": "GB"}


def _currency(request) -> str:
    wanted = (request.GET.get("currency") or "").upper()
    enabled = [c.upper() for c in settings.ENABLED_CURRENCIES]
    return wanted if wanted in enabled else enabled[0]


def pricing(request):
    currency = _currency(request)
    interval = "year" if request.GET.get("interval") == "year" else "month"
    offers = offers_for(packages_public(currency=currency), currency=currency)
    best_saving = max((o.annual_saving_percent for o in offers), default=0)
    return render(
        request,
        "portal/pricing.html",
        {
            "offers": offers,
            "currency": currency,
            "currencies": settings.ENABLED_CURRENCIES,
            "interval": interval,
            "best_saving": best_saving,
            "money_country": CURRENCY_COUNTRIES.get(currency, "US"),
        },
    )


SIGNUP_FIELDS = (
    "package",
    "promotion_code",
    "interval",
    "seats",
    "start",
    "company_name",
    "country",
    "region",
    "currency",
    "name",
    "email",
    "legal_name",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "billing_emails",
    "tax_id",
    "standing_po_number",
    "tax_exempt",
    "jurisdictions",
    "exemption_type",
    "certificate_number",
    "expires_on",
    "reason",
)
BILLING_FIELDS = (
    "legal_name",
    "address_line1",
    "address_line2",
    "city",
    "postal_code",
    "billing_emails",
    "tax_id",
    "standing_po_number",
)
COUNTRIES = [
    ("US", "United States"),
    ("CA", "Canada"),
    ("GB", "United Kingdom"),
    ("IE", "Ireland"),
    ("DE", "Germany"),
    ("AT", "Austria"),
    ("CH", "Switzerland"),
    ("FR", "France"),
    ("NL", "Netherlands"),
    ("BE", "Belgium"),
    ("ES", "Spain"),
    ("IT", "Italy"),
    ("SE", "Sweden"),
    ("DK", "Denmark"),
    ("FI", "Finland"),
    ("PL", "Poland"),
    ("AU", "Australia"),
]


def signup(request):
    """Self-serve sign-up: package, seats, company, billing details, optional tax exemption, trial or subscribe."""
    from django.contrib import messages
    from django.contrib.auth import login
    from django.shortcuts import redirect

    currency = _currency(request)
    source = request.POST if request.method == "POST" else request.GET
    form = {name: source.get(name, "") for name in SIGNUP_FIELDS}
    form["currency"] = (form["currency"] or currency).upper()
    form["interval"] = form["interval"] if form["interval"] in ("month", "year") else "month"
    offers = offers_for(packages_public(currency=form["currency"]), currency=form["currency"])
    chosen = next((o for o in offers if o.package.slug == form["package"]), offers[0] if offers else None)
    if chosen and not form["package"]:
        form["package"] = chosen.package.slug
    if not form["seats"] and chosen:
        form["seats"] = str(signup_default_seats(package=chosen.package))
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        exemption = None
        try:
            if form["tax_exempt"]:
                expires_on = _parse_date(form["expires_on"])
                if expires_on is None:
                    raise BillingError("Enter the certificate's expiry date, e.g. 2027-12-31.", field="expires_on")
                if "certificate" not in request.FILES:
                    raise BillingError(
                        "Attach the exemption certificate (PDF, PNG or JPEG, up to 5 MB).", field="certificate"
                    )
                exemption = ExemptionDeclaration(
                    jurisdictions=form["jurisdictions"],
                    exemption_type=form["exemption_type"],
                    certificate_number=form["certificate_number"],
                    expires_on=expires_on,
                    certificate=request.FILES["certificate"],
                    reason=form["reason"],
                )
            result = signup_create(
                package_slug=form["package"],
                interval=form["interval"],
                seats=form["seats"],
                trial=form["start"] != "subscribe",
                company_name=form["company_name"],
                country=form["country"],
                region=form["region"],
                currency=form["currency"],
                name=form["name"],
                email=form["email"],
                password=request.POST.get("password", ""),
                billing={name: form[name] for name in BILLING_FIELDS},
                exemption=exemption,
                promotion_code=form["promotion_code"] or None,
                client_ip=client_ip(request),
            )
        except (SubscriptionError, BillingError) as e:
            errors[e.field or "form"] = e.message
            status = 422
        else:
            login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
            # The dashboard asks the one-question effort survey about signing up (portal/views/account.py).
            request.session[SIGNUP_SURVEY_SESSION_KEY] = result.customer.pk
            messages.success(
                request,
                f"Welcome to Continuum, {result.customer.name}! "
                f"We are setting up {result.subscription.package.name} now.",
            )
            return redirect("portal:customer_dashboard", customer_id=result.customer.pk)
    return render(
        request,
        "portal/signup.html",
        {
            "form": form,
            "errors": errors,
            "offers": offers,
            "chosen": chosen,
            "currencies": settings.ENABLED_CURRENCIES,
            "countries": COUNTRIES,
            "types": ExemptionType.choices,
            "money_country": CURRENCY_COUNTRIES.get(form["currency"], "US"),
            "default_jurisdiction": "",
        },
        status=status,
    )
