"""The customer 360 page: the Customer admin, which reads across subscriptions and billing (hence in portal), in a
fixed number of queries (portal.backoffice.customer_360), with the staff actions that apply to the whole customer."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.http import require_POST

from portal.backoffice import customer_360
from subscriptions import policy
from subscriptions.admin import (
    ReadOnlyAdmin,
    RetryReasonForm,
    can_retry_provisioning,
    retry_provisioning,
    run_posted,
    subscription_staff_actions,
)
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import Customer
from subscriptions.services.notes import staff_note_add


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
