from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import (
    account,
    activity,
    auth,
    billing_pages,
    changes,
    invoices,
    package,
    pages,
    people,
    public,
    seats,
    webhooks,
)
from portal.views import payments as payment_pages

app_name = "portal"

urlpatterns = [
    path("", pages.home, name="home"),
    # Sign-in, sign-out, password reset
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset/", auth.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password-reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path("password-reset/<uidb64>/<token>/", auth.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path(
        "password-reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # Public pages
    path("pricing/", public.pricing, name="pricing"),
    path("signup/", public.signup, name="signup"),
    # The dashboard of the last-used customer
    path("dashboard/", pages.dashboard_redirect, name="dashboard"),
    # Customer-scoped pages: /c/<customer_id>/… (portal/permissions.py)
    path("c/<int:customer_id>/", pages.dashboard, name="customer_dashboard"),
    path("c/<int:customer_id>/enablement/", pages.enablement, name="enablement"),
    path("c/<int:customer_id>/invoices/", invoices.invoice_list, name="invoices"),
    path("c/<int:customer_id>/invoices/<int:invoice_id>/", invoices.invoice_detail, name="invoice_detail"),
    path("c/<int:customer_id>/invoices/<int:invoice_id>/pdf/", invoices.invoice_download, name="invoice_pdf"),
    path(
        "c/<int:customer_id>/invoices/<int:invoice_id>/e-invoice/", invoices.invoice_einvoice, name="invoice_einvoice"
    ),
    path(
        "c/<int:customer_id>/credit-notes/<int:credit_note_id>/pdf/",
        invoices.credit_note_download,
        name="credit_note_pdf",
    ),
    path("c/<int:customer_id>/activity/", activity.activity, name="activity"),
    path("c/<int:customer_id>/package/", package.package_page, name="package"),
    path("c/<int:customer_id>/seats/", seats.seats_page, name="seats"),
    path("c/<int:customer_id>/seats/assign/", people.seat_assign_view, name="seat_assign"),
    path("c/<int:customer_id>/seats/unassign/", people.seat_unassign_view, name="seat_unassign"),
    path("c/<int:customer_id>/invitations/", people.invite, name="invite"),
    path(
        "c/<int:customer_id>/invitations/<int:invitation_id>/revoke/",
        people.invitation_revoke_view,
        name="invitation_revoke",
    ),
    path("c/<int:customer_id>/people/<int:membership_id>/", people.member_role, name="member_role"),
    path("invitations/<str:token>/", people.accept_invitation, name="accept_invitation"),
    path("c/<int:customer_id>/billing/", billing_pages.billing_details, name="billing_details"),
    path("c/<int:customer_id>/tax/", billing_pages.tax_exemption, name="tax"),
    path(
        "c/<int:customer_id>/tax/<int:exemption_id>/certificate/",
        billing_pages.tax_certificate,
        name="tax_certificate",
    ),
    path("c/<int:customer_id>/api-keys/", account.api_keys, name="api_keys"),
    path("c/<int:customer_id>/api-keys/<int:key_id>/revoke/", account.api_key_revoke_view, name="api_key_revoke"),
    path("c/<int:customer_id>/webhooks/", webhooks.webhooks, name="webhooks"),
    path("c/<int:customer_id>/webhooks/<int:endpoint_id>/", webhooks.webhook_endpoint, name="webhook_endpoint"),
    path("c/<int:customer_id>/survey/", account.survey, name="survey"),
    # Payment methods and pay-now (portal/views/payments.py)
    *payment_pages.urlpatterns,
]

# Preview → confirm for every self-service change (portal/views/changes.py).
for _kind in changes.KINDS:
    urlpatterns += [
        path(
            f"c/<int:customer_id>/changes/{_kind}/preview/",
            changes.PREVIEW_VIEWS[_kind],
            name=f"change_preview_{_kind}",
        ),
        path(f"c/<int:customer_id>/changes/{_kind}/apply/", changes.APPLY_VIEWS[_kind], name=f"change_apply_{_kind}"),
    ]
