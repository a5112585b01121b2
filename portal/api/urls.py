"""/api/v1/… — the paths are part of the public contract: never rename one."""

from django.urls import path, re_path

from portal.api.views import (
    accounts,
    billing,
    discounts,
    docs,
    entitlements,
    members,
    signup,
    subscriptions,
    usage,
    webhooks,
)
from portal.api.views.errors import not_found

app_name = "api"

C = "customers/<int:customer_id>"
S = f"{C}/subscriptions/<int:subscription_id>"
W = f"{C}/webhook-endpoints"

urlpatterns = [
    path("v1/schema/", docs.ApiSchemaView.as_view(), name="schema"),
    path("docs/", docs.ApiDocsView.as_view(), name="docs"),
    path("v1/auth/token/", accounts.TokenObtainApi.as_view(), name="auth-token"),
    path("v1/packages/", accounts.PackageListApi.as_view(), name="packages"),
    path("v1/me/", accounts.MeApi.as_view(), name="me"),
    path(f"v1/{C}/", accounts.CustomerDetailApi.as_view(), name="customer"),
    path(f"v1/{C}/subscriptions/", subscriptions.SubscriptionListApi.as_view(), name="subscriptions"),
    path(f"v1/{S}/", subscriptions.SubscriptionDetailApi.as_view(), name="subscription"),
    path(f"v1/{S}/seat-changes/preview/", subscriptions.SeatChangePreviewApi.as_view(), name="seat-change-preview"),
    path(f"v1/{S}/seat-changes/", subscriptions.SeatChangeApi.as_view(), name="seat-change"),
    path(
        f"v1/{S}/package-changes/preview/",
        subscriptions.PackageChangePreviewApi.as_view(),
        name="package-change-preview",
    ),
    path(f"v1/{S}/package-changes/", subscriptions.PackageChangeApi.as_view(), name="package-change"),
    path(f"v1/{S}/cancel/", subscriptions.SubscriptionCancelApi.as_view(), name="subscription-cancel"),
    path(f"v1/{S}/reactivate/", subscriptions.SubscriptionReactivateApi.as_view(), name="subscription-reactivate"),
    path(f"v1/{S}/discounts/preview/", discounts.DiscountPreviewApi.as_view(), name="discount-preview"),
    path(f"v1/{S}/discounts/", discounts.DiscountApplyApi.as_view(), name="discounts"),
    path(f"v1/{C}/members/", members.MemberListApi.as_view(), name="members"),
    path(f"v1/{S}/seat-assignments/", members.SeatAssignmentListApi.as_view(), name="seat-assignments"),
    path(
        f"v1/{S}/seat-assignments/<int:user_id>/",
        members.SeatAssignmentDetailApi.as_view(),
        name="seat-assignment",
    ),
    path(f"v1/{C}/billing-profile/", billing.BillingProfileApi.as_view(), name="billing-profile"),
    path(f"v1/{C}/invoices/", billing.InvoiceListApi.as_view(), name="invoices"),
    path(f"v1/{C}/invoices/<int:invoice_id>/", billing.InvoiceDetailApi.as_view(), name="invoice"),
    path(f"v1/{C}/invoices/<int:invoice_id>/pdf/", billing.InvoicePdfApi.as_view(), name="invoice-pdf"),
    path(f"v1/{C}/invoices/<int:invoice_id>/e-invoice/", billing.InvoiceEInvoiceApi.as_view(), name="invoice-einvoice"),
    path(f"v1/{C}/credit-notes/", billing.CreditNoteListApi.as_view(), name="credit-notes"),
    path(f"v1/{C}/tax-exemptions/", billing.TaxExemptionListApi.as_view(), name="tax-exemptions"),
    path(
        f"v1/{C}/tax-exemptions/<int:exemption_id>/",
        billing.TaxExemptionDetailApi.as_view(),
        name="tax-exemption",
    ),
    path(f"v1/{C}/entitlements/", entitlements.CustomerEntitlementsApi.as_view(), name="customer-entitlements"),
    path("v1/entitlements/", entitlements.ServiceEntitlementsApi.as_view(), name="entitlements"),
    path("v1/usage/", usage.UsageSubmitApi.as_view(), name="usage"),
    path("v1/signup/", signup.SignupApi.as_view(), name="signup"),
    path(f"v1/{W}/", webhooks.WebhookEndpointListApi.as_view(), name="webhook-endpoints"),
    path(f"v1/{W}/<int:endpoint_id>/", webhooks.WebhookEndpointDetailApi.as_view(), name="webhook-endpoint"),
    path(
        f"v1/{W}/<int:endpoint_id>/rotate-secret/",
        webhooks.WebhookEndpointRotateSecretApi.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path(f"v1/{W}/<int:endpoint_id>/test/", webhooks.WebhookEndpointTestApi.as_view(), name="webhook-endpoint-test"),
    path(f"v1/{W}/<int:endpoint_id>/deliveries/", webhooks.WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
    path(
        f"v1/{W}/<int:endpoint_id>/deliveries/<int:delivery_id>/resend/",
        webhooks.WebhookDeliveryResendApi.as_view(),
        name="webhook-delivery-resend",
    ),
    # Anything else under /api/ answers in the API's error format rather than the site's HTML 404 page.
    re_path(r"^.*$", not_found, name="not-found"),
]
