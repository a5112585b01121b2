"""Sign-in under the shared lockout (portal/lockout.py); password reset uses Django's views with our templates and
namespaced URLs, throttled per account and per client."""

from axes.utils import reset as axes_reset
from django import forms
from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.urls import reverse_lazy

from portal import lockout, throttle
from portal.services.api_keys import user_access_tokens_revoke


class ThrottledAuthenticationForm(AuthenticationForm):
    """Says so when the shared lockout refused to check the password (the account or the client is over its limit);
    the same words whether or not the address has an account."""

    def clean(self):
        try:
            return super().clean()
        except forms.ValidationError:
            if self.request is not None and lockout.refused(self.request):
                self.throttled = True
                raise forms.ValidationError(lockout.blocked_message(), code="throttled")
            raise


class LoginView(auth_views.LoginView):
    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if getattr(form, "throttled", False):
            response.status_code = 429
        return lockout.handled(response)


RESET_MESSAGE = (
    "Too many password reset requests. Please wait {minutes} minutes before asking again; "
    "a link we already sent keeps working."
)


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset, throttled per submitted address and per client before any e-mail is sent. The address is
    counted whether or not it has an account, and the refusal reads the same, so nothing is enumerated."""

    email_template_name = "registration/password_reset_email.txt"
    subject_template_name = "registration/password_reset_subject.txt"
    success_url = reverse_lazy("portal:password_reset_done")

    def form_valid(self, form):
        window = settings.PASSWORD_RESET_WINDOW_SECONDS
        allowed = throttle.hit(
            scope="password-reset",
            account=form.cleaned_data["email"],
            ip=throttle.client_ip(self.request),
            account_limit=settings.PASSWORD_RESET_ACCOUNT_LIMIT,
            ip_limit=settings.PASSWORD_RESET_IP_LIMIT,
            window=window,
        )
        if not allowed:
            form.add_error(None, RESET_MESSAGE.format(minutes=max(1, window // 60)))
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Setting a new password ends every session and access token of the user at once (Django's session auth hash;
    the tokens' fingerprint, and they are marked revoked here) and lifts a sign-in lockout on the account."""

    success_url = reverse_lazy("portal:password_reset_complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.user
        user_access_tokens_revoke(user=user, reason="password reset")
        axes_reset(username=lockout.account_key(user.email))
        return response
