"""Webhook endpoints and their delivery log in the back office. Staff register internal endpoints (no customer:
every customer's events) or look after customers' ones; every write goes through subscriptions.services.webhooks.
Registered from subscriptions/admin/__init__.py."""

from django import forms
from django.contrib import admin, messages

from subscriptions.exceptions import SubscriptionError
from subscriptions.models import STAFF_SUBSCRIBABLE_EVENT_TYPES, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from subscriptions.services.webhooks import (
    _validate_event_types,
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
    webhook_endpoint_update,
    webhook_url_check,
)

# Staff may pick the internal types (customer.stage_changed) for an internal endpoint; the service refuses them for
# a customer's endpoint.
TYPE_CHOICES = [("*", "All event types"), *((value, value) for value in STAFF_SUBSCRIBABLE_EVENT_TYPES)]


class WebhookEndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(choices=TYPE_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = WebhookEndpoint
        fields = ("customer", "url", "description", "event_types", "enabled")

    def clean(self):
        cleaned = super().clean()
        try:
            webhook_url_check(cleaned.get("url"))
            _validate_event_types(cleaned.get("event_types") or [], staff_endpoint=not cleaned.get("customer"))
        except SubscriptionError as error:
            self.add_error(error.field if error.field in self.fields else None, f"{error.message} ({error.code})")
        return cleaned


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("attempted_at", "succeeded", "status_code", "latency_ms", "response_excerpt", "error")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("url", "customer", "enabled", "types", "last_success_at", "disabled_reason")
    list_filter = ("enabled",)
    search_fields = ("url", "customer__name")
    autocomplete_fields = ("customer",)
    actions = ("send_test", "rotate_secret")

    def get_readonly_fields(self, request, obj=None):
        return ("secret_hint", "last_success_at", "disabled_reason", "created_by") if obj else ()

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            webhook_endpoint_update(
                endpoint_id=obj.pk,
                actor=request.user,
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
                enabled=data["enabled"],
            )
            return
        created = webhook_endpoint_create(
            customer=data["customer"],
            url=data["url"],
            event_types=data["event_types"],
            description=data["description"],
            actor=request.user,
        )
        obj.pk = created.pk
        messages.warning(request, f"Signing secret (shown once, store it in the receiver): {created.secret}")

    @admin.display(description="Event types")
    def types(self, endpoint) -> str:
        return ", ".join(endpoint.event_types)

    @admin.action(description="Send a test event", permissions=["change"])
    def send_test(self, request, queryset):
        for endpoint in queryset:
            webhook_endpoint_send_test(endpoint_id=endpoint.pk, actor=request.user)
        messages.success(request, f"Test event queued for {queryset.count()} endpoint(s); see the delivery log.")

    @admin.action(description="Rotate the signing secret (old one valid 24 h)", permissions=["change"])
    def rotate_secret(self, request, queryset):
        for endpoint in queryset:
            rotated = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=request.user, overlap_hours=24)
            messages.warning(request, f"New signing secret of {rotated.url} (shown once): {rotated.secret}")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "event",
        "endpoint",
        "kind",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "kind")
    list_select_related = ("event", "endpoint")
    search_fields = ("event__public_id", "endpoint__url", "event__type")
    inlines = [WebhookAttemptInline]
    actions = ("resend",)
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Resend the selected deliveries' events", permissions=["change"])
    def resend(self, request, queryset):
        for delivery in queryset:
            webhook_delivery_resend(delivery_id=delivery.pk, actor=request.user)
        messages.success(request, f"{queryset.count()} event(s) queued to be sent again.")
