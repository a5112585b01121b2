from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import auth, pages

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
    # The dashboard of the last-used customer
    path("dashboard/", pages.dashboard_redirect, name="dashboard"),
    # Customer-scoped pages: /c/<customer_id>/… (portal/permissions.py)
    path("c/<int:customer_id>/", pages.dashboard, name="customer_dashboard"),
    path("c/<int:customer_id>/enablement/", pages.enablement, name="enablement"),
]
