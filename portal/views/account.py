"""API keys and the effort survey (after a self-service change or a sign-up)."""

from django.contrib import messages
from django.shortcuts import redirect, render

from portal.inputs import id_from_request
from portal.models import ApiKey, ApiKeyRole
from portal.permissions import API_KEYS, DASHBOARD, customer_view, get_for_customer
from portal.services.api_keys import api_key_create, api_key_revoke
from portal.services.surveys import SIGNUP, effort_survey_record
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import SubscriptionChange


@customer_view(API_KEYS)
def api_keys(request):
    customer = request.customer
    context = {"customer": customer, "roles": ApiKeyRole.choices, "errors": {}, "form": {}}
    if request.method == "POST":
        form = {"name": request.POST.get("name", ""), "role": request.POST.get("role", "")}
        try:
            key, plaintext = api_key_create(customer=customer, name=form["name"], role=form["role"], actor=request.user)
        except SubscriptionError as e:
            context["errors"] = {e.field or "form": e.message}
            context["form"] = form
            status = 422
        else:
            # Shown once, in this response only; never stored, never in a redirect URL or the session.
            context["new_key"] = key
            context["plaintext"] = plaintext
            status = 201
        context["keys"] = list(ApiKey.objects.filter(customer=customer).select_related("created_by"))
        response = render(request, "portal/api_keys.html", context, status=status)
        response["Cache-Control"] = "no-store"
        return response
    context["keys"] = list(ApiKey.objects.filter(customer=customer).select_related("created_by"))
    return render(request, "portal/api_keys.html", context)


@customer_view(API_KEYS)
def api_key_revoke_view(request, key_id: int):
    key = get_for_customer(ApiKey, request.customer, pk=key_id)
    if request.method == "POST":
        try:
            api_key_revoke(api_key=key, actor=request.user)
        except SubscriptionError as e:
            messages.error(request, e.message)
        else:
            messages.success(request, f"The key “{key.name}” is revoked and stops working now.")
    return redirect("portal:api_keys", customer_id=request.customer.pk)


# Set by sign-up to the new customer's id: the dashboard then offers the effort survey about signing up, until the
# person answers it or says "Not now" (both clear it). Only someone who just signed up can answer for a sign-up.
SIGNUP_SURVEY_SESSION_KEY = "portal_signup_survey"


def signup_survey_pending(request) -> bool:
    return request.session.get(SIGNUP_SURVEY_SESSION_KEY) == request.customer.pk


@customer_view(DASHBOARD)
def survey(request):
    """After a self-service change or a sign-up: "How easy was that?" 1–7. Skippable; one answer per change/sign-up."""
    customer = request.customer
    raw = request.POST.get("change") or request.GET.get("change") or ""
    change = None
    change_id = id_from_request(raw)
    if change_id is not None:
        change = get_for_customer(SubscriptionChange, customer, pk=change_id, customer_field="subscription__customer")
    kind = "" if change is not None else (request.POST.get("kind") or request.GET.get("kind") or "other")
    dashboard = redirect("portal:customer_dashboard", customer_id=customer.pk)
    if kind == SIGNUP and not signup_survey_pending(request):
        # Only the person who just signed up is asked, once: a second submit (or anyone else) records nothing.
        return dashboard
    context = {"customer": customer, "change": change, "kind": kind}
    if request.method == "POST":
        if request.POST.get("skip"):
            request.session.pop(SIGNUP_SURVEY_SESSION_KEY, None)
            return dashboard
        try:
            effort_survey_record(
                customer=customer,
                user=request.user,
                score=request.POST.get("score"),
                change=change,
                change_kind=kind,
                comment=request.POST.get("comment", ""),
            )
        except SubscriptionError as e:
            context.update(error=e, comment=request.POST.get("comment", ""))
            return render(request, "portal/survey.html", context, status=422)
        if kind == SIGNUP:
            request.session.pop(SIGNUP_SURVEY_SESSION_KEY, None)
        messages.success(request, "Thank you — that helps us make the next change easier.")
        return dashboard
    return render(request, "portal/survey.html", context)
