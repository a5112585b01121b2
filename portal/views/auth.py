"""Sign-in with throttling; password reset uses Django's views with our templates and namespaced URLs."""

from django import forms
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.urls import reverse_lazy

from portal import throttle


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses to check the password once the account or the client IP is over its limit (see portal/throttle.py)."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": throttle.MESSAGE,
    }

    def clean(self):
        email = (self.data.get("username") or "").strip().lower()
        ip = throttle.client_ip(self.request) if self.request else "unknown"
        if throttle.login_blocked(email=email, ip=ip):
            self.throttled = True
            raise forms.ValidationError(throttle.blocked_message(), code="throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            if email:
                throttle.login_failed(email=email, ip=ip)
            raise
        throttle.login_succeeded(email=email)
        return cleaned


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if getattr(form, "throttled", False):
            response.status_code = 429
        return response


class PasswordResetView(auth_views.PasswordResetView):
    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("portal:password_reset_done")


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    success_url = reverse_lazy("portal:password_reset_complete")
