"""The customer 360 page (the Customer admin, which reads across subscriptions and billing, hence lives in portal),
and the REST API's credentials.

The change page of a customer is the 360 view: everything about the customer on one page, in a fixed number of
queries (portal.backoffice.customer_360), with the staff actions that apply to the whole customer.

API keys and service tokens are read-only: only a SHA-256 of each secret is stored, and even that hash is never
shown (it would let anyone holding it test guesses offline). Revoking goes through portal.services.api_keys, which
audits it; a superuser creates a service token here and sees its secret once, on the page that answers the POST.
"""

import uuid

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from billing.exceptions import BillingError
from billing.services import changes as billed_changes
from portal.backoffice import customer_360
from portal.models import ApiKey, ServiceToken
from portal.services.api_keys import api_key_revoke, service_token_create, service_token_revoke
from subscriptions import policy
from subscriptions.admin import (
    AdminAction,
    ReadOnlyAdmin,
    RetryReasonForm,
    StaffReasonForm,
    can_retry_provisioning,
    retry_provisioning,
    run_posted,
    subscription_staff_actions,
)
from subscriptions.admin import SubscriptionAdmin as SubscriptionAdminBase
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import ActorKind, Customer, Interval, Subscription
from subscriptions.money import format_money
from subscriptions.services.notes import staff_note_add

# The index lists the signed-in role's work queues (held invoices, exemptions, failed provisioning).
admin.site.index_template = "admin/continuum_index.html"


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    change_form_template = "admin/customer_360.html"
    list_display = ["name", "legal_name", "country", "region", "currency", "member_count", "created_at"]
    list_filter = ["country", "currency"]
    search_fields = [
        "name",
        "legal_name",
        "memberships__user__email",
        "invoices__number",
        "billing_profile__legal_name",
        "billing_profile__tax_id",
        "stripe_link__stripe_customer_id",
        "payments__stripe_payment_intent_id",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(member_count=Count("memberships", distinct=True))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj) -> int:
        return obj.member_count

    def get_urls(self):
        urls = [
            path(
                "<int:customer_id>/retry-provisioning/",
                self.admin_site.admin_view(self.retry_provisioning_view),
                name="subscriptions_customer_retry_provisioning",
            ),
            path(
                "<int:customer_id>/note/",
                self.admin_site.admin_view(self.add_note_view),
                name="subscriptions_customer_add_note",
            ),
        ]
        return urls + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        customer = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if customer is not None and self.has_view_permission(request, customer):
            view = customer_360(customer=customer)
            if policy.staff_allows(request.user, policy.Action.SEATS_CHANGE, in_admin=True):
                for subscription in view.live_subscriptions:
                    subscription.staff_actions = subscription_staff_actions(subscription)
            extra_context["c360"] = view
            extra_context["can_add_note"] = policy.staff_allows(request.user, policy.Action.NOTES_ADD, in_admin=True)
            extra_context["can_retry_provisioning"] = can_retry_provisioning(request.user)
            extra_context["can_resend_invitations"] = policy.staff_allows(
                request.user, policy.Action.INVITATIONS_RESEND, in_admin=True
            )
            extra_context["can_view_exemptions"] = policy.staff_allows(
                request.user, policy.Action.TAX_VIEW, in_admin=True
            )
            extra_context["can_edit_billing_profile"] = policy.staff_allows(
                request.user, policy.Action.BILLING_EDIT, in_admin=True
            )
        return super().change_view(request, object_id, form_url, extra_context)

    @method_decorator(require_POST)
    def add_note_view(self, request, customer_id: int):
        if not policy.staff_allows(request.user, policy.Action.NOTES_ADD, in_admin=True):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=customer_id)

        def add(data: dict) -> str:
            staff_note_add(customer=customer, author=request.user, body=request.POST.get("body", ""))
            return "Note added."

        return run_posted(request, run=add, redirect_to=_customer_url(customer), refused=(SubscriptionError,))

    @method_decorator(require_POST)
    def retry_provisioning_view(self, request, customer_id: int):
        if not can_retry_provisioning(request.user):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=customer_id)

        def retry(data: dict) -> str:
            retry_provisioning(request, customer, reason=data.get("reason", ""))
            return "Provisioning retry queued; the result appears in the last runs below."

        return run_posted(
            request, form_class=RetryReasonForm, run=retry, redirect_to=_customer_url(customer), refused=()
        )


def _customer_url(customer: Customer) -> str:
    return reverse("admin:subscriptions_customer_change", args=[customer.pk])


# --- Staff seat and package changes: the customer's own billed change, with a preview ---------------------------------


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


# --- REST API credentials --------------------------------------------------------------------------------------------


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


def _state(credential) -> str:
    return "active" if credential.revoked_at is None else f"revoked {credential.revoked_at:%Y-%m-%d %H:%M}"


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    """Customers' API keys. Support agents (and superusers) see them and can revoke a leaked one; the key's owner
    sees the revocation on the customer's timeline (`api_key.revoked`, actor = the staff member)."""

    list_display = ["prefix", "name", "customer", "role", "state", "created_by", "created_at", "last_used_at"]
    list_filter = [RevokedFilter, "role"]
    list_select_related = ["customer", "created_by"]
    search_fields = ["prefix", "name", "customer__name"]
    # Never key_hash: not in the list, the page, or the search fields.
    fields = [
        "customer",
        "name",
        "role",
        "prefix",
        "state",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    ]
    readonly_fields = fields
    actions = ["revoke_selected"]

    def has_revoke_permission(self, request) -> bool:
        return policy.staff_allows(request.user, policy.Action.API_KEYS_MANAGE, in_admin=True)

    @admin.action(description="Revoke the selected API keys", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        revoked = []
        for key in queryset.select_related("customer").order_by("pk"):
            if key.revoked_at is None:
                api_key_revoke(api_key=key, actor=request.user)
                revoked.append(key.prefix)
        if revoked:
            messages.success(request, f"Revoked {len(revoked)} key(s): {', '.join(revoked)}. They stop working now.")
        else:
            messages.info(request, "The selected keys were already revoked.")

    @admin.display(description="state")
    def state(self, key) -> str:
        return _state(key)


class ServiceTokenCreateForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Which system uses it, e.g. “Product entitlement sync”.")
    scopes = forms.MultipleChoiceField(
        choices=ServiceToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ServiceToken.Scope.ENTITLEMENTS_READ],
    )


@admin.register(ServiceToken)
class ServiceTokenAdmin(ReadOnlyAdmin):
    """Tokens for the product being sold (they read every customer's entitlements): superusers only."""

    list_display = ["prefix", "name", "scope_list", "state", "created_by", "created_at", "last_used_at"]
    list_filter = [RevokedFilter]
    list_select_related = ["created_by"]
    search_fields = ["prefix", "name"]
    fields = ["name", "scope_list", "prefix", "state", "created_by", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke_selected"]

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_add_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_revoke_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def add_view(self, request, form_url="", extra_context=None):
        """Create through `service_token_create`; the answer to the POST is the only page that shows the secret
        (no redirect, nothing in the session or messages, not cacheable)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ServiceTokenCreateForm(request.POST if request.method == "POST" else None)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Create a service token",
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            token, plaintext = service_token_create(
                name=form.cleaned_data["name"].strip(), scopes=form.cleaned_data["scopes"], actor=request.user
            )
            self.log_addition(request, token, [{"added": {}}])
            context.update(title="Service token created", token=token, plaintext=plaintext)
            response = TemplateResponse(request, "admin/portal/servicetoken/created.html", context)
            response["Cache-Control"] = "no-store"
            return response
        return TemplateResponse(request, "admin/portal/servicetoken/add.html", context)

    @admin.action(description="Revoke the selected service tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        revoked = []
        for token in queryset.order_by("pk"):
            if token.revoked_at is None:
                service_token_revoke(token=token, actor=request.user)
                revoked.append(token.prefix)
        if revoked:
            messages.success(request, f"Revoked {len(revoked)} token(s): {', '.join(revoked)}. They stop working now.")
        else:
            messages.info(request, "The selected tokens were already revoked.")

    @admin.display(description="scopes")
    def scope_list(self, token) -> str:
        return ", ".join(token.scopes or [])

    @admin.display(description="state")
    def state(self, token) -> str:
        return _state(token)


# (model, action, form, service, policy action or model permission) of the admins above: tests/admin/
# test_action_table.py holds it against the registered admins, docs/backoffice.md lists it. "superuser": the admin
# lets superusers only, whatever their groups.
ADMIN_ACTIONS: tuple[AdminAction, ...] = (
    AdminAction(
        "subscriptions.customer",
        "subscriptions_customer_retry_provisioning",
        RetryReasonForm,
        "subscriptions.services.provisioning.entitlements_retry",
        policy.Action.PROVISIONING_RETRY,
    ),
    AdminAction(
        "subscriptions.customer",
        "subscriptions_customer_add_note",
        None,  # the note's text is checked by the service
        "subscriptions.services.notes.staff_note_add",
        policy.Action.NOTES_ADD,
    ),
    AdminAction(
        "subscriptions.subscription",
        "subscriptions_subscription_change_seats",
        ChangeSeatsForm,
        "billing.services.changes.change_apply",
        policy.Action.SEATS_CHANGE,
    ),
    AdminAction(
        "subscriptions.subscription",
        "subscriptions_subscription_change_package",
        ChangePackageForm,
        "billing.services.changes.change_apply",
        policy.Action.PACKAGE_CHANGE,
    ),
    AdminAction(
        "portal.apikey",
        "revoke_selected",
        None,
        "portal.services.api_keys.api_key_revoke",
        policy.Action.API_KEYS_MANAGE,
    ),
    AdminAction(
        "portal.servicetoken",
        "add_view",
        ServiceTokenCreateForm,
        "portal.services.api_keys.service_token_create",
        permission="superuser",
    ),
    AdminAction(
        "portal.servicetoken",
        "revoke_selected",
        None,
        "portal.services.api_keys.service_token_revoke",
        permission="superuser",
    ),
)
