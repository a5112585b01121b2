"""The back office's admin site: django-otp's two-factor sign-in for staff when settings.STAFF_OTP_REQUIRED.

Production requires it (DJANGO_ENV=production); under `make run` it is off so the demo logins work. The password is
still checked by the ordinary authentication backend chain (ModelBackend, plus django-axes' lockout backend where it
is installed); the second factor is a TOTP code checked by the form after the password, so a lockout backend sees
every password attempt exactly as on the default site.
"""

from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.exceptions import ValidationError
from django_otp import devices_for_user, user_has_device
from django_otp.admin import OTPAdminAuthenticationForm

from portal.services.staff_signin import staff_sign_in_failed

ENROL_HINT = "Ask an administrator to enrol an authenticator app for you: manage.py staff_otp_enrol <your e-mail>."


def otp_required() -> bool:
    return bool(getattr(settings, "STAFF_OTP_REQUIRED", False))


def staff_is_verified(request) -> bool:
    """A staff session counts only once its second factor is verified (when the profile requires one)."""
    if not otp_required():
        return True
    is_verified = getattr(request.user, "is_verified", None)
    return bool(is_verified and is_verified())


class StaffOTPAuthenticationForm(OTPAdminAuthenticationForm):
    """Password, then the authenticator's six-digit code; a wrong or missing code is audited like a wrong password."""

    def _chosen_device(self, user):
        # One authenticator per staff member (manage.py staff_otp_enrol): the code field alone is enough.
        device = super()._chosen_device(user)
        if device is None:
            devices = list(devices_for_user(user, for_verify=True))
            if len(devices) == 1:
                device = devices[0]
        return device

    def clean_otp(self, user):
        if user is not None and not user_has_device(user):
            staff_sign_in_failed(request=self.request, email=user.email, user=user, reason="no_authenticator")
            raise ValidationError(
                f"Two-factor sign-in is required for staff and no authenticator is set up for you. {ENROL_HINT}",
                code="otp_not_enrolled",
            )
        try:
            super().clean_otp(user)
        except ValidationError:
            if user is not None:
                staff_sign_in_failed(request=self.request, email=user.email, user=user, reason="second_factor")
            raise


class ContinuumAdminSite(AdminSite):
    # Read per request, so override_settings(STAFF_OTP_REQUIRED=...) in tests and the environment both take effect.
    @property
    def login_form(self):
        return StaffOTPAuthenticationForm if otp_required() else None

    @property
    def login_template(self):
        return "otp/admin111/login.html" if otp_required() else None

    def has_permission(self, request):
        return super().has_permission(request) and staff_is_verified(request)

    def get_urls(self):
        # The staff report pages (issue 20): each view checks its policy action; admin_view makes them staff-only.
        from django.urls import path

        from portal.views import staff_metrics  # local import: this class loads with the apps, before models exist

        def page(view):
            return self.admin_view(lambda request: view(request, self))

        return [
            path("reports/health/", page(staff_metrics.health_view), name="staff_health"),
            path("reports/health/customers.csv", page(staff_metrics.health_csv_view), name="staff_health_csv"),
            path("reports/metrics/", page(staff_metrics.metrics_view), name="staff_metrics"),
            path(
                "reports/metrics/reconciliation/",
                page(staff_metrics.reconciliation_view),
                name="staff_metrics_reconciliation",
            ),
            *super().get_urls(),
        ]
