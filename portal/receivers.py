"""Django's sign-in signals → the staff sign-in audit (portal/services/staff_signin.py).

Signals, because every way of signing in sends them (the admin, the portal form, the token endpoint, and
django-axes' lockout backend on a locked-out attempt); the receivers only call the service."""

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from portal.services.staff_signin import staff_sign_in_failed, staff_sign_in_succeeded, staff_signed_out


@receiver(user_logged_in, dispatch_uid="portal.staff_signed_in")
def _staff_signed_in(sender, request, user, **kwargs):
    if user.is_staff:
        staff_sign_in_succeeded(request=request, user=user)


@receiver(user_login_failed, dispatch_uid="portal.staff_sign_in_failed")
def _staff_sign_in_failed(sender, credentials, request=None, **kwargs):
    email = str(credentials.get("username") or credentials.get("email") or "")
    staff_sign_in_failed(request=request, email=email, reason="password")


@receiver(user_logged_out, dispatch_uid="portal.staff_signed_out")
def _staff_signed_out(sender, request, user, **kwargs):
    staff_signed_out(request=request, user=user, reason=getattr(request, "staff_session_end_reason", "signed_out"))
