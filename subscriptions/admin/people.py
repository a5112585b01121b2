"""People: staff and customer users, memberships, and invitations (support resends a pending one)."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from subscriptions import policy
from subscriptions.admin.base import ReadOnlyAdmin, ReadOnlyInline
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import ActorKind, Invitation, Membership, User
from subscriptions.services.members import invitation_resend


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
