"""Staff sign-in audit and session limits: every staff sign-in, failed attempt, sign-out and expiry is an AuditEvent
(customer=None, actor=the staff user when known), so "who entered the back office, when, from where" is answerable.

Failures are recorded for staff accounts only (a customer's wrong password is the portal's throttle's business), and
never carry the password or the code that was tried.
"""

import time

from django.conf import settings
from django.contrib.auth import get_user_model

from portal import throttle
from subscriptions.models import ActorKind
from subscriptions.services.audit import audit_record

SIGNED_IN_AT = "staff_signed_in_at"
LAST_SEEN_AT = "staff_last_seen_at"


def _where(request) -> dict:
    if request is None:
        return {}
    return {"ip": throttle.client_ip(request), "path": request.path[:200]}


def staff_sign_in_succeeded(*, request, user) -> None:
    """Audit the sign-in and start the staff session clock (idle and absolute limits, see staff_session_expired)."""
    device = getattr(user, "otp_device", None)
    audit_record(
        customer=None,
        action="staff.signed_in",
        actor=user,
        actor_kind=ActorKind.STAFF,
        obj=user,
        summary=f"{user.email} signed in" + (" with two-factor authentication" if device else ""),
        after={**_where(request), "second_factor": device.__class__.__name__ if device else None},
    )
    if request is not None and hasattr(request, "session"):
        now = time.time()
        request.session[SIGNED_IN_AT] = now
        request.session[LAST_SEEN_AT] = now
        request.session.set_expiry(settings.STAFF_SESSION_IDLE_SECONDS)


def staff_sign_in_failed(*, request, email: str, user=None, reason: str = "password") -> None:
    """Audit a failed staff sign-in (wrong password, missing/wrong second factor, locked out). Non-staff: nothing."""
    if user is None and email:
        user = get_user_model().objects.filter(email__iexact=email.strip()).first()
    if user is None or not user.is_staff:
        return
    audit_record(
        customer=None,
        action="staff.sign_in_failed",
        actor=user,
        actor_kind=ActorKind.STAFF,
        obj=user,
        summary=f"Failed staff sign-in for {user.email} ({reason.replace('_', ' ')})",
        after={**_where(request), "reason": reason},
    )


def staff_signed_out(*, request, user, reason: str = "signed_out") -> None:
    if user is None or not getattr(user, "is_staff", False):
        return
    audit_record(
        customer=None,
        action="staff.session_expired" if reason != "signed_out" else "staff.signed_out",
        actor=user,
        actor_kind=ActorKind.STAFF,
        obj=user,
        summary=f"{user.email} " + ("signed out" if reason == "signed_out" else f"session ended ({reason})"),
        after={**_where(request), "reason": reason},
    )


def staff_session_expired(*, session, now: float) -> str | None:
    """Why this staff session is over ("idle", "max_age"), or None. Sessions from before this rule count from now."""
    signed_in = session.get(SIGNED_IN_AT)
    last_seen = session.get(LAST_SEEN_AT)
    if signed_in is None or last_seen is None:
        return None
    if now - signed_in > settings.STAFF_SESSION_MAX_SECONDS:
        return "max_age"
    if now - last_seen > settings.STAFF_SESSION_IDLE_SECONDS:
        return "idle"
    return None
