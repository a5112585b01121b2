"""Billing details and tax exemption pages (owners and billing admins)."""

from datetime import date

from django.contrib import messages
from django.shortcuts import redirect, render

from billing.exceptions import BillingError, NotFound
from billing.models import ChangeBillingMode, ExemptionStatus, ExemptionType
from billing.selectors import (
    tax_exemption_certificate_for_customer,
    tax_exemption_current_for_customer,
    tax_exemption_current_in,
    tax_exemption_list_for_customer,
)
from billing.services.exemptions import tax_exemption_submit
from billing.services.profiles import (
    CUSTOMER_EDITABLE_FIELDS,
    billing_address_problems,
    billing_profile_get_or_create,
    billing_profile_update,
)
from portal.downloads import attachment_response
from portal.page_cache import page_data
from portal.permissions import BILLING, TAX, customer_view
from subscriptions import clock
from subscriptions.policy import Action

# What a customer may edit here is the service's rule (payment terms and currency are agreed with billing staff).
PROFILE_FIELDS = tuple(name for name in CUSTOMER_EDITABLE_FIELDS if name != "requires_po")


def _profile_form(profile) -> dict:
    form = {name: getattr(profile, name, "") for name in PROFILE_FIELDS}
    form["billing_emails"] = ", ".join(profile.billing_emails or [])
    form["requires_po"] = profile.requires_po
    return form


@customer_view(BILLING)
def billing_details(request):

    customer = request.customer
    profile = billing_profile_get_or_create(customer=customer)
    errors = {}
    form = _profile_form(profile)
    status = 200
    if request.method == "POST":
        form = {name: request.POST.get(name, "") for name in PROFILE_FIELDS}
        form["requires_po"] = request.POST.get("requires_po") == "on"
        try:
            profile = billing_profile_update(customer=customer, actor=request.user, **form)
        except BillingError as e:
            errors[e.field or "form"] = e.message
            status = 422
        else:
            messages.success(
                request, "Billing details saved. Invoices already issued keep the details they were issued with."
            )
            return redirect("portal:billing_details", customer_id=customer.pk)

    return render(
        request,
        "portal/billing_details.html",
        {
            "customer": customer,
            "profile": profile,
            "form": form,
            "errors": errors,
            "problems": billing_address_problems(profile=profile),
            "modes": ChangeBillingMode.choices,
            "languages": [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("es", "Español")],
        },
        status=status,
    )


def _parse_date(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip())
    except (AttributeError, ValueError):
        return None


def exemption_submit_from_post(request, customer):
    """Shared by the tax page and sign-up: validate the form fields, then call billing's submit service."""

    expires_on = _parse_date(request.POST.get("expires_on", ""))
    if expires_on is None:
        raise BillingError("Enter the certificate's expiry date, e.g. 2027-12-31.", field="expires_on")
    certificate = request.FILES.get("certificate")
    if certificate is None:
        raise BillingError("Attach the exemption certificate (PDF, PNG or JPEG, up to 5 MB).", field="certificate")
    return tax_exemption_submit(
        customer=customer,
        jurisdictions=request.POST.get("jurisdictions", ""),
        exemption_type=request.POST.get("exemption_type", ""),
        certificate_number=request.POST.get("certificate_number", ""),
        expires_on=expires_on,
        certificate=certificate,
        reason=request.POST.get("reason", ""),
        actor=request.user,
    )


HISTORY_ROWS = 20  # the tax page's certificate history


@customer_view(TAX)
def tax_exemption(request):

    customer = request.customer
    errors, form, status = {}, {}, 200
    if request.method == "POST":
        form = {
            k: request.POST.get(k, "")
            for k in ("jurisdictions", "exemption_type", "certificate_number", "expires_on", "reason")
        }
        try:
            exemption_submit_from_post(request, customer)
        except BillingError as e:
            errors[e.field or "form"] = e.message
            status = 422
        else:
            messages.success(
                request,
                "Certificate received. Our billing team reviews it, usually within one business day; "
                "invoices wait for the decision so they are right the first time.",
            )
            return redirect("portal:tax", customer_id=customer.pk)
    return render(
        request,
        "portal/tax.html",
        {
            **page_data(request, "tax", lambda: _exemptions(customer)),
            "customer": customer,
            "types": ExemptionType.choices,
            "errors": errors,
            "form": form,
            "default_jurisdiction": f"{customer.country}-{customer.region}" if customer.region else customer.country,
        },
        status=status,
    )


def _exemptions(customer) -> dict:
    # One query: the history (newest first) holds the current exemption too, unless there are more than it shows.
    history = list(tax_exemption_list_for_customer(customer=customer)[: HISTORY_ROWS + 1])
    if len(history) <= HISTORY_ROWS:
        current = tax_exemption_current_in(history)
    else:
        history = history[:HISTORY_ROWS]
        current = tax_exemption_current_for_customer(customer=customer)
    today = clock.today()  # the cache key has today's date (portal/page_cache.py)
    days_left = (current.expires_on - today).days if current and current.status == ExemptionStatus.APPROVED else None
    return {
        "current": current,
        "history": history,
        "days_left": days_left,
        "expiring_soon": days_left is not None and days_left <= 30,
    }


@customer_view(Action.TAX_VIEW)
def tax_certificate(request, exemption_id: int):
    from django.http import Http404

    try:
        data, content_type, name = tax_exemption_certificate_for_customer(
            customer=request.customer, exemption_id=exemption_id
        )
    except NotFound:
        raise Http404("No such certificate.")
    return attachment_response(data, content_type=content_type, filename=name)
