"""Back-office registrations for subscriptions. Admin actions call services; they never edit money or status fields.

Who may do what comes from model permissions (the groups are created by portal/migrations/0001_staff_groups.py):
view-only pages for everyone, superusers included, except the catalog, which superusers edit (validated on save).
A staff action on a row (change seats, extend a trial, resend an invitation...) needs the model's "change"
permission; the admin form itself stays read-only and the action runs the same service the portal runs.
"""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse

from subscriptions import policy
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import (
    LIVE_STATUSES,
    ActorKind,
    AuditEvent,
    Customer,
    Entitlement,
    Invitation,
    Membership,
    Package,
    PackageComponent,
    Price,
    ProvisioningRun,
    ScheduledChange,
    SeatAssignment,
    SeatLedgerEntry,
    Sku,
    StaffNote,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
    SubscriptionStatus,
    User,
)
from subscriptions.services.catalog import catalog_validate
from subscriptions.services.members import invitation_resend
from subscriptions.services.provisioning import entitlements_retry
from subscriptions.services.trials import MAX_EXTENSION_DAYS, subscription_extend_trial

admin.site.site_header = "Continuum back office"
admin.site.site_title = "Continuum back office"
admin.site.index_title = "Customers, subscriptions and billing"


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only for everyone, superusers included: these rows change only through services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- People ----------------------------------------------------------------------------------------------------------


class MembershipInline(ReadOnlyInline):
    model = Membership
    fk_name = "user"
    fields = ["customer", "role", "created_at"]
    readonly_fields = fields


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    list_filter = ["is_staff", "is_superuser", "is_active", "groups"]
    search_fields = ["email", "name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "name", "password1", "password2")}),)
    inlines = [MembershipInline]

    def get_readonly_fields(self, request, obj=None):
        # Only a superuser hands out back-office rights; nobody else can escalate their own account.
        if request.user.is_superuser:
            return ["last_login", "date_joined"]
        return ["is_staff", "is_superuser", "groups", "user_permissions", "last_login", "date_joined"]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "customer", "role", "created_at"]
    list_filter = ["role"]
    list_select_related = ["user", "customer"]
    search_fields = ["user__email", "user__name", "customer__name"]
    autocomplete_fields = []


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = [
        "email",
        "customer",
        "role",
        "invited_by",
        "invited_by_key",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    ]
    list_filter = ["role"]
    list_select_related = ["customer", "invited_by"]
    search_fields = ["email", "customer__name"]
    actions = ["resend_selected"]

    def get_urls(self):
        return [
            path(
                "<int:invitation_id>/resend/",
                self.admin_site.admin_view(self.resend_view),
                name="subscriptions_invitation_resend",
            ),
        ] + super().get_urls()

    def has_resend_permission(self, request) -> bool:
        return policy.staff_allows(request.user, policy.Action.INVITATIONS_RESEND, in_admin=True)

    def _resend(self, request, invitation: Invitation) -> bool:
        try:
            invitation_resend(invitation_id=invitation.pk, actor=request.user, actor_kind=ActorKind.STAFF)
        except SubscriptionError as error:
            messages.error(request, f"{invitation.email}: {error.message}")
            return False
        return True

    @admin.action(description="Resend the selected invitations", permissions=["resend"])
    def resend_selected(self, request, queryset):
        sent = [invitation.email for invitation in queryset if self._resend(request, invitation)]
        if sent:
            messages.success(request, f"Invitation sent again to {', '.join(sent)}.")

    def resend_view(self, request, invitation_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_resend_permission(request):
            raise PermissionDenied
        invitation = get_object_or_404(Invitation, pk=invitation_id)
        if self._resend(request, invitation):
            messages.success(request, f"Invitation sent again to {invitation.email}.")
        return HttpResponseRedirect(reverse("admin:subscriptions_customer_change", args=[invitation.customer_id]))


# --- Catalog (superusers edit; everyone else reads) ------------------------------------------------------------------


class SuperuserEditsMixin:
    """The catalog is changed by superusers only; support and billing staff read it."""

    def has_add_permission(self, request, *args) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


class _CatalogRefused(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class CatalogValidatedMixin:
    """Validate the catalog after the row and its inlines are saved; refuse the whole save with specific messages.

    The save runs in a savepoint; when catalog_validate finds problems the savepoint rolls back (nothing was saved,
    no "changed" log entry, no success message) and the form is shown again, bound to what was typed, with the
    problems as its errors.
    """

    def catalog_problems(self, obj) -> list[str]:
        raise NotImplementedError

    def _changeform_view(self, request, object_id, form_url, extra_context):
        if request.method != "POST" or getattr(request, "_catalog_problems", None):
            return super()._changeform_view(request, object_id, form_url, extra_context)
        try:
            with transaction.atomic():
                return super()._changeform_view(request, object_id, form_url, extra_context)
        except _CatalogRefused as refused:
            request._catalog_problems = refused.problems
            return super()._changeform_view(request, object_id, form_url, extra_context)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        problems = self.catalog_problems(form.instance)
        if problems:
            raise _CatalogRefused(problems)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        problems = getattr(request, "_catalog_problems", None)
        if not problems:
            return form_class

        class RefusedForm(form_class):
            def clean(self):
                super().clean()
                raise forms.ValidationError(["The catalog would be invalid, so nothing was saved:", *problems])

        return RefusedForm


@admin.register(Sku)
class SkuAdmin(CatalogValidatedMixin, SuperuserEditsMixin, admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "kind",
        "tax_category",
        "feature_key",
        "feature_label",
        "feature_value_kind",
        "feature_value",
    ]
    list_filter = ["kind", "tax_category", "is_active"]
    search_fields = ["code", "name", "feature_key", "feature_label"]

    def catalog_problems(self, obj) -> list[str]:
        # A SKU change (e.g. deactivating it) can break every package that contains it.
        problems: list[str] = []
        for package in Package.objects.filter(components__sku=obj).distinct():
            problems += catalog_validate(package)
        return problems


class PackageComponentInline(SuperuserEditsMixin, admin.TabularInline):
    model = PackageComponent
    extra = 0
    autocomplete_fields = ["sku"]


class PriceInline(SuperuserEditsMixin, admin.TabularInline):
    """Prices are grandfathered: an existing row's amounts never change (add a new row, deactivate the old)."""

    model = Price
    extra = 0
    fields = ["currency", "interval", "flat_amount_minor", "seat_amount_minor", "setup_amount_minor", "is_active"]

    def get_readonly_fields(self, request, obj=None):
        return ["currency", "interval", "flat_amount_minor", "seat_amount_minor", "setup_amount_minor"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class NewPriceInline(SuperuserEditsMixin, admin.TabularInline):
    """New price rows; existing ones are listed (read-only amounts) in PriceInline."""

    model = Price
    extra = 0
    verbose_name = "new price"
    verbose_name_plural = "add prices (a price change is a new row; deactivate the old one)"
    fields = ["currency", "interval", "flat_amount_minor", "seat_amount_minor", "setup_amount_minor", "is_active"]

    def get_queryset(self, request):
        return super().get_queryset(request).none()

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Package)
class PackageAdmin(CatalogValidatedMixin, SuperuserEditsMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "is_addon", "is_public", "is_active", "included_seats", "min_seats", "max_seats"]
    list_filter = ["is_addon", "is_public", "is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["addon_for", "change_targets"]
    inlines = [PackageComponentInline, PriceInline, NewPriceInline]

    def catalog_problems(self, obj) -> list[str]:
        return catalog_validate(obj)


# --- Subscriptions (read-only; staff actions call the subscription services) -----------------------------------------


class SeatLedgerInline(ReadOnlyInline):
    model = SeatLedgerEntry
    fields = ["effective_at", "seats_from", "seats_to", "reason", "actor", "created_at"]
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


class AddonInline(ReadOnlyInline):
    model = SubscriptionAddon
    fields = ["package", "flat_amount_minor", "quantity", "started_at", "ended_at"]
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("package")


class ScheduledChangeInline(ReadOnlyInline):
    model = ScheduledChange
    fields = ["kind", "payload", "effective_at", "created_by", "applied_at", "canceled_at"]
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("created_by")


class SeatAssignmentInline(ReadOnlyInline):
    model = SeatAssignment
    fields = ["user", "assigned_at", "assigned_by"]
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "assigned_by")


class SubscriptionChangeInline(ReadOnlyInline):
    model = SubscriptionChange
    fields = ["created_at", "kind", "amount_due_now_minor", "currency", "effective_at", "actor"]
    readonly_fields = fields
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")


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

    Changing seats or the package is billed at once, so those two views live in portal/admin.py (they call billing's
    billed change service, which this app may not import); they keep these URL names."""
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


# --- Audit trail and notes -------------------------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail, read-only for everyone (dj-stripe's event admin does the same)."""

    list_display = ["created_at", "customer", "actor", "actor_kind", "action", "summary", "reason"]
    list_filter = ["actor_kind", "action"]
    list_select_related = ["customer", "actor"]
    search_fields = ["customer__name", "actor__email", "action", "object_id", "summary", "reason"]
    date_hierarchy = "created_at"
    fields = [
        "created_at",
        "customer",
        "actor",
        "actor_kind",
        "action",
        "object_type",
        "object_id",
        "summary",
        "before",
        "after",
        "reason",
    ]


@admin.register(StaffNote)
class StaffNoteAdmin(ReadOnlyAdmin):
    """Notes are added on the customer page (audited) and never edited."""

    list_display = ["created_at", "customer", "author", "body"]
    list_select_related = ["customer", "author"]
    search_fields = ["customer__name", "author__email", "body"]


# --- Staff actions on a subscription (on the customer's behalf, with a reason, through the portal's services) ---------


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
    if not request.user.has_perm("subscriptions.change_subscription"):
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


# --- Provisioning (read-only; support retries through entitlements_retry) ------------------------------------------


class RetryReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


def can_retry_provisioning(user) -> bool:
    return policy.staff_allows(user, policy.Action.PROVISIONING_RETRY, in_admin=True)


def retry_provisioning(request, customer: Customer, reason: str = "") -> None:
    entitlements_retry(customer_id=customer.pk, actor=request.user, reason=reason)


@admin.register(Entitlement)
class EntitlementAdmin(ReadOnlyAdmin):
    list_display = ["customer", "feature_key", "user", "value_kind", "desired_value", "applied_value", "state", "error"]
    list_filter = ["state", "value_kind", "feature_key"]
    list_select_related = ["customer", "user"]
    search_fields = ["customer__name", "feature_key", "user__email"]
    actions = ["retry_selected"]

    def has_retry_permission(self, request) -> bool:
        return can_retry_provisioning(request.user)

    @admin.action(
        description="Retry provisioning for the customers of the selected entitlements", permissions=["retry"]
    )
    def retry_selected(self, request, queryset):
        customers = Customer.objects.filter(pk__in=queryset.values("customer_id")).order_by("pk")
        for customer in customers:
            retry_provisioning(request, customer, reason="Retry from the entitlement list")
        messages.success(request, f"Provisioning retry queued for {', '.join(c.name for c in customers)}.")


@admin.register(ProvisioningRun)
class ProvisioningRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "customer",
        "trigger",
        "outcome",
        "attempt",
        "queued_at",
        "finished_at",
        "duration_ms",
        "error",
    ]
    list_filter = ["outcome", "backend"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "trigger", "error"]
    date_hierarchy = "queued_at"


from subscriptions import admin_webhooks  # noqa: E402,F401 - registers the webhook endpoints and delivery log
