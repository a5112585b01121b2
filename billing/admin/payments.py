"""Payments, Stripe customers and payment methods, dunning cases and Stripe webhook events, read-only; billing staff
retry a failed event (`stripe_event_retry`)."""

from django.contrib import admin, messages

from billing.admin.base import ReadOnlyAdmin, ReadOnlyInline, money
from billing.exceptions import BillingError
from billing.models import DunningCase, Payment, PaymentMethod, Refund, StripeCustomer, StripeEvent, StripeEventStatus
from billing.services.stripe_events import stripe_event_retry
from subscriptions import policy


class RefundInline(ReadOnlyInline):
    model = Refund
    fk_name = "payment"
    fields = ["credit_note", "amount_minor", "currency", "status", "stripe_refund_id", "failure_message", "created_at"]
    readonly_fields = fields


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "invoice",
        "customer",
        "kind",
        "amount",
        "status",
        "reference",
        "stripe_payment_intent_id",
        "failure_message",
        "recorded_by",
    ]
    list_filter = ["status", "kind", "currency"]
    list_select_related = ["invoice", "customer", "recorded_by"]
    search_fields = ["invoice__number", "customer__name", "stripe_payment_intent_id", "stripe_charge_id", "reference"]
    date_hierarchy = "created_at"
    inlines = [RefundInline]

    @admin.display(description="amount", ordering="amount_minor")
    def amount(self, payment) -> str:
        return money(payment.amount_minor, payment.currency)


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ["customer", "stripe_customer_id", "synced_at", "created_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "stripe_customer_id"]


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ["customer", "brand", "last4", "exp_month", "exp_year", "is_default", "removed_at"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "stripe_payment_method_id", "last4"]


@admin.register(DunningCase)
class DunningCaseAdmin(ReadOnlyAdmin):
    list_display = ["invoice", "customer", "stage", "retries_done", "next_retry_at", "past_due_at", "closed_at"]
    list_filter = ["stage"]
    list_select_related = ["invoice", "customer"]
    search_fields = ["invoice__number", "customer__name"]


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    """Webhook events, read-only (as dj-stripe shows them); billing staff retry a failed one."""

    list_display = ["received_at", "type", "stripe_event_id", "object_id", "status", "attempts", "error"]
    list_filter = ["status", "type"]
    search_fields = ["stripe_event_id", "object_id", "type"]
    date_hierarchy = "received_at"
    actions = ["retry_selected"]

    def has_retry_permission(self, request) -> bool:
        return policy.staff_allows(request.user, policy.Action.STRIPE_EVENTS_RETRY, in_admin=True)

    @admin.action(description="Retry the selected failed events", permissions=["retry"])
    def retry_selected(self, request, queryset):
        for event in queryset.order_by("received_at", "id"):
            try:
                status = stripe_event_retry(event_id=event.pk, actor=request.user)
            except BillingError as error:
                messages.error(request, f"{event.stripe_event_id}: {error.message}")
            else:
                level = messages.SUCCESS if status != StripeEventStatus.FAILED else messages.ERROR
                messages.add_message(request, level, f"{event.stripe_event_id}: {status}.")
