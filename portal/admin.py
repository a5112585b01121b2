"""The customer 360 page: the Customer admin, which reads across subscriptions and billing (hence lives in portal).

The change page of a customer is the 360 view: everything about the customer on one page, in a fixed number of
queries (portal.backoffice.customer_360), with the staff actions that apply to the whole customer.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from portal.backoffice import customer_360
from subscriptions.admin import (
    ReadOnlyAdmin,
    RetryReasonForm,
    can_retry_provisioning,
    retry_provisioning,
    subscription_staff_actions,
)
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import Customer
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
            if request.user.has_perm("subscriptions.change_subscription"):
                for subscription in view.live_subscriptions:
                    subscription.staff_actions = subscription_staff_actions(subscription)
            extra_context["c360"] = view
            extra_context["can_add_note"] = request.user.has_perm("subscriptions.add_staffnote")
            extra_context["can_retry_provisioning"] = can_retry_provisioning(request.user)
            extra_context["can_resend_invitations"] = request.user.has_perm("subscriptions.change_invitation")
            extra_context["can_view_exemptions"] = request.user.has_perm("billing.view_taxexemption")
        return super().change_view(request, object_id, form_url, extra_context)

    def add_note_view(self, request, customer_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm("subscriptions.add_staffnote"):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=customer_id)
        try:
            staff_note_add(customer=customer, author=request.user, body=request.POST.get("body", ""))
        except SubscriptionError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, "Note added.")
        return HttpResponseRedirect(reverse("admin:subscriptions_customer_change", args=[customer.pk]))

    def retry_provisioning_view(self, request, customer_id: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_retry_provisioning(request.user):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=customer_id)
        form = RetryReasonForm(request.POST)
        form.is_valid()
        retry_provisioning(request, customer, reason=form.cleaned_data.get("reason", ""))
        messages.success(request, "Provisioning retry queued; the result appears in the last runs below.")
        return HttpResponseRedirect(reverse("admin:subscriptions_customer_change", args=[customer.pk]))
