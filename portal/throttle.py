"""Sign-in throttling, per account and per client IP.

Counters live in Django's cache (`CACHES["default"]`; set `CACHE_URL=redis://…` in production so every web process
shares them — the local-memory default is per process, which is fine for development and tests). A counter is a
fixed window: the first failure starts a `LOGIN_THROTTLE_WINDOW_SECONDS` window, and once a key reaches its limit every
attempt is refused until the window ends, *before* the password is checked, so guessing cannot continue.

No user enumeration: the account key is the submitted e-mail address, normalised, whether or not such a user exists,
and the refusal message is the same for both keys and for known and unknown addresses.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache


def _limits() -> tuple[int, int, int]:
    """(per-account limit, per-IP limit, window seconds), read per call so settings overrides apply."""
    return (
        getattr(settings, "LOGIN_THROTTLE_ACCOUNT_LIMIT", 5),
        getattr(settings, "LOGIN_THROTTLE_IP_LIMIT", 20),
        getattr(settings, "LOGIN_THROTTLE_WINDOW_SECONDS", 15 * 60),
    )


MESSAGE = (
    "Too many sign-in attempts. For your security, please wait {minutes} minutes before trying again, "
    "or reset your password."
)


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"login-throttle:{kind}:{digest}"


def client_ip(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def login_blocked(*, email: str, ip: str) -> bool:
    account_limit, ip_limit, _ = _limits()
    counts = cache.get_many([_key("account", email), _key("ip", ip)])
    return counts.get(_key("account", email), 0) >= account_limit or counts.get(_key("ip", ip), 0) >= ip_limit


def login_failed(*, email: str, ip: str) -> None:
    window = _limits()[2]
    for key in (_key("account", email), _key("ip", ip)):
        if cache.add(key, 1, timeout=window):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window)


def login_succeeded(*, email: str) -> None:
    # The IP counter is left alone: one good password must not reset an address that is spraying many accounts.
    cache.delete(_key("account", email))


def blocked_message() -> str:
    return MESSAGE.format(minutes=max(1, _limits()[2] // 60))
