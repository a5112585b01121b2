"""Staff seat and package changes on a customer's behalf: the customer's own billed change (form → billed preview →
confirm → `billing.services.changes.change_apply`), added to the subscriptions app's Subscription admin."""

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from billing.exceptions import BillingError
from billing.services import changes as billed_changes
from subscriptions import policy
from subscriptions.admin import (
    StaffReasonForm,
)
from subscriptions.admin import SubscriptionAdmin as SubscriptionAdminBase
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import ActorKind, Interval, Subscription
from subscriptions.money import format_money


class ChangeSeatsForm(StaffReasonForm):
    seats = forms.IntegerField(min_value=0, max_value=1_000_000, help_text="The new purchased seat count.")
    field_order = ["seats", "reason"]


class ChangePackageForm(StaffReasonForm):
    package = forms.ChoiceField()
    interval = forms.ChoiceField(choices=Interval.choices)
    seats = forms.IntegerField(
        min_value=0, max_value=1_000_000, required=False, help_text="Leave empty to keep the current count."
    )
    field_order = ["package", "interval", "seats", "reason"]

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        targets = subscription.package.change_targets.filter(is_active=True).order_by("display_order", "name")
        self.fields["package"].choices = [(subscription.package.slug, f"{subscription.package.name} (current)")] + [
            (package.slug, package.name) for package in targets
        ]
        self.fields["interval"].initial = subscription.interval


class PreviewTokenForm(forms.Form):
    """What the confirm step carries back: the preview's version and amount, and one idempotency key."""

    expected_version = forms.IntegerField(min_value=1, max_value=2**31 - 1)
    expected_amount_due_minor = forms.IntegerField(min_value=-(2**62), max_value=2**62)
    idempotency_key = forms.CharField(max_length=90)


def _preview_rows(preview, currency: str) -> list[dict]:
    return [
        {
            "description": line.description,
            "period": f"{line.period_start:%Y-%m-%d} → {line.period_end:%Y-%m-%d}",
            "quantity": line.quantity,
            "unit": format_money(line.unit_amount_minor, currency),
            "amount": format_money(line.amount_minor, currency),
            "proration": line.proration,
        }
        for line in preview.lines
    ]


def _change_params(kind: str, data: dict) -> dict:
    if kind == "seats":
        return {"seats": data["seats"]}
    return {"package_slug": data["package"], "interval": data["interval"], "seats": data["seats"]}


def staff_change_view(model_admin, request, subscription_id: int, *, kind: str):
    """Form → billed preview (exact lines, tax, total due now and how it is billed, next recurring amount) → confirm
    → `billing.services.changes.change_apply` with the reason: the same billed change as the customer's own, so the
    proration is invoiced (or added to the next invoice, per the customer's billing profile) at once, not left to the
    billing run's safety net."""
    if not policy.staff_allows(request.user, policy.Action.SEATS_CHANGE, in_admin=True):
        raise PermissionDenied
    if kind == "package" and not policy.staff_allows(request.user, policy.Action.PACKAGE_CHANGE, in_admin=True):
        raise PermissionDenied
    subscription = get_object_or_404(Subscription.objects.select_related("customer", "package"), pk=subscription_id)
    if kind == "seats":
        form_class, form_kwargs, title = ChangeSeatsForm, {}, "Change seats"
    else:
        form_class, form_kwargs = ChangePackageForm, {"subscription": subscription}
        title = "Change package or billing interval"
    form = form_class(request.POST or None, initial={"seats": subscription.seats}, **form_kwargs)
    billed = None
    if request.method == "POST" and form.is_valid():
        params = _change_params(kind, form.cleaned_data)
        try:
            billed = billed_changes.change_preview(subscription_id=subscription.pk, kind=kind, **params)
        except (SubscriptionError, BillingError) as error:
            form.add_error(None, error.message)
        if billed is not None and "_apply" in request.POST:
            token = PreviewTokenForm(request.POST)
            if not token.is_valid():
                raise PermissionDenied  # a crafted confirm without a preview
            try:
                outcome = billed_changes.change_apply(
                    subscription_id=subscription.pk,
                    kind=kind,
                    expected_version=token.cleaned_data["expected_version"],
                    expected_amount_due_minor=token.cleaned_data["expected_amount_due_minor"],
                    idempotency_key=f"admin:{token.cleaned_data['idempotency_key']}",
                    actor=request.user,
                    actor_kind=ActorKind.STAFF,
                    reason=form.cleaned_data["reason"],
                    **params,
                )
            except (SubscriptionError, BillingError) as error:
                messages.error(request, error.message)
            else:
                billed_how = f" Invoiced now as {outcome.invoice}." if outcome.invoice is not None else ""
                if outcome.pending_items:
                    billed_how = " Added to the next invoice."
                summary = outcome.change.result.get("summary", "")
                messages.success(request, f"Done for {subscription.customer}: {summary}.{billed_how}")
                return HttpResponseRedirect(
                    reverse("admin:subscriptions_customer_change", args=[subscription.customer_id])
                )
    preview = billed.preview if billed is not None else None
    currency = billed.currency if billed is not None else subscription.currency
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": title,
        "subscription": subscription,
        "form": form,
        "preview": preview,
        "billed": billed,
        "preview_rows": _preview_rows(preview, currency) if preview else [],
        "amount_due_now": format_money(preview.amount_due_now_minor, currency) if preview else "",
        "tax_now": format_money(billed.tax_minor, currency) if billed else "",
        "total_now": format_money(billed.total_minor, currency) if billed else "",
        "next_recurring": format_money(billed.next_recurring_total_minor, currency) if billed else "",
        "idempotency_key": uuid.uuid4().hex,
        "submit_name": "_preview",
        "submit_label": "Preview",
    }
    return TemplateResponse(request, "admin/subscriptions/subscription/staff_change.html", context)


admin.site.unregister(Subscription)


@admin.register(Subscription)
class SubscriptionAdmin(SubscriptionAdminBase):
    """The subscriptions app's admin plus the billed seat and package changes (billing is a layer above it)."""

    def get_urls(self):
        def wrap(kind):
            return self.admin_site.admin_view(
                lambda request, subscription_id: staff_change_view(self, request, subscription_id, kind=kind)
            )

        return [
            path("<int:subscription_id>/change-seats/", wrap("seats"), name="subscriptions_subscription_change_seats"),
            path(
                "<int:subscription_id>/change-package/",
                wrap("package"),
                name="subscriptions_subscription_change_package",
            ),
        ] + super().get_urls()
