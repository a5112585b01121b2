"""Back-office registrations for subscriptions. Admin actions call services; they never edit money or status fields.

Who may do what comes from model permissions (the groups are created by portal/migrations/0001_staff_groups.py):
view-only pages for everyone, superusers included, except the catalog, which superusers edit (validated on save).
A staff action on a row (change seats, extend a trial, resend an invitation...) needs the model's "change"
permission; the admin form itself stays read-only and the action runs the same service the portal runs.
"""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from subscriptions.models import (
    AuditEvent,
    Invitation,
    Membership,
    Package,
    PackageComponent,
    Price,
    ScheduledChange,
    SeatAssignment,
    SeatLedgerEntry,
    Sku,
    StaffNote,
    Subscription,
    SubscriptionAddon,
    SubscriptionChange,
    User,
)

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
    list_display = ["email", "customer", "role", "invited_by", "created_at", "expires_at", "accepted_at", "revoked_at"]
    list_filter = ["role"]
    list_select_related = ["customer", "invited_by"]
    search_fields = ["email", "customer__name"]


# --- Catalog (superusers edit; everyone else reads) ------------------------------------------------------------------


class SuperuserEditsMixin:
    """The catalog is changed by superusers only; support and billing staff read it."""

    def has_add_permission(self, request, *args) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


@admin.register(Sku)
class SkuAdmin(SuperuserEditsMixin, admin.ModelAdmin):
    list_display = ["code", "name", "kind", "tax_category", "feature_key", "feature_value_kind", "feature_value"]
    list_filter = ["kind", "tax_category", "is_active"]
    search_fields = ["code", "name", "feature_key"]


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
class PackageAdmin(SuperuserEditsMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "is_addon", "is_public", "is_active", "included_seats", "min_seats", "max_seats"]
    list_filter = ["is_addon", "is_public", "is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["addon_for", "change_targets"]
    inlines = [PackageComponentInline, PriceInline, NewPriceInline]


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
