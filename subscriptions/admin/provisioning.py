"""Entitlements and provisioning runs (read-only); support retries a customer's provisioning through
`entitlements_retry`."""

from django import forms
from django.contrib import admin, messages

from subscriptions import policy
from subscriptions.admin.base import ReadOnlyAdmin
from subscriptions.models import Customer, Entitlement, ProvisioningRun
from subscriptions.services.provisioning import entitlements_retry


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
