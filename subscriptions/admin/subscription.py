"""Subscriptions (read-only) and the staff actions on one, made on the customer's behalf with a reason through the
same services the portal runs: extending a trial here; the billed seat and package changes in
portal/admin/subscription_changes.py."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from subscriptions import policy
from subscriptions.admin.base import ReadOnlyAdmin, ReadOnlyInline
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import (
    LIVE_STATUSES,
    ScheduledChange,
    SeatAssignment,
    SeatLedgerEntry,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
    SubscriptionStatus,
)
from subscriptions.services.trials import MAX_EXTENSION_DAYS, subscription_extend_trial


class SeatLedgerInline(ReadOnlyInline):
    model = SeatLedgerEntry
    fields = ["effective_at", "seats_from", "seats_to", "reason", "actor", "created_at"]
    readonly_fields = fields
    show_change_link = False

    select_related = ("actor",)


class AddonInline(ReadOnlyInline):
    model = SubscriptionAddon
    fields = ["package", "flat_amount_minor", "quantity", "started_at", "ended_at"]
    readonly_fields = fields
    show_change_link = False

    select_related = ("package",)


class ScheduledChangeInline(ReadOnlyInline):
    model = ScheduledChange
    fields = ["kind", "payload", "effective_at", "created_by", "applied_at", "canceled_at"]
    readonly_fields = fields
    show_change_link = False

    select_related = ("created_by",)


class SeatAssignmentInline(ReadOnlyInline):
    model = SeatAssignment
    fields = ["user", "assigned_at", "assigned_by"]
    readonly_fields = fields
    show_change_link = False

    select_related = ("user", "assigned_by")


class SubscriptionChangeInline(ReadOnlyInline):
    model = SubscriptionChange
    fields = ["created_at", "kind", "amount_due_now_minor", "currency", "effective_at", "actor"]
    readonly_fields = fields
    show_change_link = False

    select_related = ("actor",)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "customer",
        "package",
        "status",
        "interval",
        "seats",
        "currency",
        "current_period_end",
        "cancel_at_period_end",
    ]
    list_filter = ["status", "interval", "currency", "cancel_at_period_end", "package"]
    list_select_related = ["customer", "package"]
    search_fields = ["customer__name", "customer__legal_name", "package__name"]
    date_hierarchy = "current_period_end"
    inlines = [AddonInline, SeatAssignmentInline, ScheduledChangeInline, SeatLedgerInline, SubscriptionChangeInline]
    change_form_template = "admin/subscriptions/subscription/change_form.html"

    def get_urls(self):
        def wrap(view, **kwargs):
            return self.admin_site.admin_view(
                lambda request, subscription_id: view(self, request, subscription_id, **kwargs)
            )

        return [
            path(
                "<int:subscription_id>/extend-trial/",
                wrap(_extend_trial_view),
                name="subscriptions_subscription_extend_trial",
            ),
        ] + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        subscription = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if subscription is not None and policy.staff_allows(request.user, policy.Action.SEATS_CHANGE, in_admin=True):
            extra_context["staff_actions"] = subscription_staff_actions(subscription)
        return super().change_view(request, object_id, form_url, extra_context)


def subscription_staff_actions(subscription: Subscription) -> list[tuple[str, str]]:
    """(label, url) of the staff actions that apply to this subscription now; the caller checks the permission.

    Changing seats or the package is billed at once, so those two views live in
    portal/admin/subscription_changes.py (they call billing's billed change service, which this app may not import);
    they keep these URL names."""
    if subscription.status not in LIVE_STATUSES:
        return []
    actions = [
        ("Change seats", reverse("admin:subscriptions_subscription_change_seats", args=[subscription.pk])),
        ("Change package", reverse("admin:subscriptions_subscription_change_package", args=[subscription.pk])),
    ]
    if subscription.status == SubscriptionStatus.TRIALING:
        actions.append(
            ("Extend trial", reverse("admin:subscriptions_subscription_extend_trial", args=[subscription.pk]))
        )
    return actions


class StaffReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        max_length=1000,
        help_text="Why you make this change for the customer (kept in the audit trail, shown on the timeline).",
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason: staff changes are made on the customer's behalf.")
        return reason


class ExtendTrialForm(StaffReasonForm):
    days = forms.IntegerField(min_value=1, max_value=MAX_EXTENSION_DAYS, initial=7)
    field_order = ["days", "reason"]


def _extend_trial_view(model_admin, request, subscription_id: int):
    if not policy.staff_allows(request.user, policy.Action.TRIALS_EXTEND, in_admin=True):
        raise PermissionDenied
    subscription = get_object_or_404(Subscription.objects.select_related("customer", "package"), pk=subscription_id)
    form = ExtendTrialForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            subscription_extend_trial(
                subscription_id=subscription.pk,
                days=form.cleaned_data["days"],
                actor=request.user,
                reason=form.cleaned_data["reason"],
            )
        except SubscriptionError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"Trial of {subscription.customer} extended by {form.cleaned_data['days']} days.")
            return HttpResponseRedirect(reverse("admin:subscriptions_customer_change", args=[subscription.customer_id]))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Extend the trial",
        "subscription": subscription,
        "form": form,
        "submit_name": "_apply",
        "submit_label": "Extend",
    }
    return TemplateResponse(request, "admin/subscriptions/subscription/staff_change.html", context)
