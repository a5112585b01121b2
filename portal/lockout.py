"""One sign-in lockout for every way in — the portal sign-in, `POST /api/v1/auth/token/` and the Django admin login —
counted per account and per client, with django-axes (docs/decisions.md, docs/portal.md).

Every failed password check anywhere goes through `django.contrib.auth.authenticate`, which sends
`user_login_failed`; axes records it as one `AccessAttempt` (account = the submitted e-mail address, normalised,
whether or not such a user exists; client = `REMOTE_ADDR`). `LockoutBackend`, first in AUTHENTICATION_BACKENDS,
refuses to check any password once the account has `LOGIN_THROTTLE_ACCOUNT_LIMIT` failures or the client has
`LOGIN_THROTTLE_IP_LIMIT` failures within `LOGIN_THROTTLE_WINDOW_SECONDS` of the last one — so the right password
is refused too, on every surface, until the window has passed.

Why a handler of our own on top of axes: axes has one failure limit for all its lockout parameters, and an office
behind one address must not be locked out by five typos of one person, so the client's limit is higher than the
account's. And a correct password clears the account's failures but not the client's, so an address spraying many
accounts cannot reset itself with one account it owns.
"""

import ipaddress
from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from axes.exceptions import AxesBackendPermissionDenied
from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.db.models import Sum
from django.http import HttpResponse
from django.template.response import TemplateResponse

MESSAGE = (
    "Too many sign-in attempts. For your security, please wait {minutes} minutes before trying again, "
    "or reset your password."
)


def _limits() -> tuple[int, int, int]:
    """(per-account limit, per-client limit, window seconds), read per call so settings overrides apply."""
    return (
        getattr(settings, "LOGIN_THROTTLE_ACCOUNT_LIMIT", 5),
        getattr(settings, "LOGIN_THROTTLE_IP_LIMIT", 20),
        getattr(settings, "LOGIN_THROTTLE_WINDOW_SECONDS", 15 * 60),
    )


def blocked_message() -> str:
    return MESSAGE.format(minutes=max(1, _limits()[2] // 60))


# --- axes hooks (named in portal/settings.py) ------------------------------------------------------------------------


def failure_limit(request, credentials) -> int:
    return _limits()[0]


def cool_off(request=None) -> timedelta:
    return timedelta(seconds=_limits()[2])


def client_ip(request) -> str | None:
    """REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it. None when there is
    no address (a unix socket, the test client's login()): axes stores addresses in an `inet` column on PostgreSQL."""
    address = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def account_key(value) -> str:
    return str(value or "").strip().lower()[:254]


def username(request, credentials) -> str:
    """The account an attempt is counted against: the submitted e-mail address, normalised."""
    if credentials:
        return account_key(credentials.get("username") or credentials.get("email"))
    data = getattr(request, "data", None) or getattr(request, "POST", {})
    return account_key(data.get("username") or data.get("email"))


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """The portal's sign-in page and the token endpoint answer a lockout themselves (429, same text for known and
    unknown addresses); anything else (the admin login) gets the same message on a page of its own."""
    if original_response is not None and getattr(original_response, "lockout_handled", False):
        return original_response
    response = TemplateResponse(request, "registration/locked_out.html", {"message": blocked_message()}, status=429)
    return response.render()


class LockoutBackend(AxesStandaloneBackend):
    """Refuses every password check for a locked account or client (raises PermissionDenied, which `authenticate`
    turns into "no user" plus `user_login_failed`). Checks nothing itself: ModelBackend, after it, checks passwords."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            # Only code calls authenticate without a request (a shell, the test client's login()): there is no
            # client to count, and no stranger guessing.
            return None
        try:
            return super().authenticate(request, username=username, password=password, **kwargs)
        except AxesBackendPermissionDenied:
            # The password was not even looked at: callers answer 429 with `blocked_message()`.
            request.lockout_refused = True
            raise


def refused(request) -> bool:
    """True when this request's sign-in was refused by the lockout, before any password check."""
    return bool(getattr(request, "lockout_refused", False))


def handled(response: HttpResponse) -> HttpResponse:
    """Mark a response that already tells the person about the lockout in its own words (see lockout_response)."""
    response.lockout_handled = True
    return response


class AccountAndClientHandler(AxesDatabaseHandler):
    """axes' database handler with a limit per lockout parameter: AXES_LOCKOUT_PARAMETERS is
    ["username", "ip_address"], in that order, and `get_failures` reports the account's failures, raised to the
    account limit once the client is over its own limit, so axes' single comparison locks on either."""

    def get_failures(self, request, credentials=None) -> int:
        by_account, by_client = (
            attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            for attempts in self.get_user_attempts(request, credentials)
        )
        account_limit, client_limit, _ = _limits()
        return max(by_account, account_limit) if by_client >= client_limit else by_account

    def reset_user_attempts(self, request, credentials=None) -> int:
        # A correct password clears the account's failures only, never the client's.
        by_account = self.filter_user_attempts(request, credentials)[0]
        count, _ = by_account.delete()
        return count
