"""The REST API's credentials. API keys and service tokens are read-only: only a SHA-256 of each secret is stored,
and even that hash is never shown (it would let anyone holding it test guesses offline). Revoking goes through
portal.services.api_keys, which audits it; a superuser creates a service token here and sees its secret once, on
the page that answers the POST."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse

from portal.models import ApiKey, ServiceToken
from portal.services.api_keys import api_key_revoke, service_token_create, service_token_revoke
from subscriptions import policy
from subscriptions.admin import (
    ReadOnlyAdmin,
)


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
