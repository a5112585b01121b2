"""Fixed-window counters per account and per client, in Django's cache — for actions that are not sign-ins
(sign-ins share the axes lockout, portal/lockout.py). Used by password reset.

Counters live in `CACHES["default"]`; set `CACHE_URL=redis://…` in production so every web process shares them (the
local-memory default is per process). The first hit starts a window; once a key reaches its limit every further hit
is refused until the window ends. The account key is the submitted e-mail address, normalised, whether or not such a
user exists, so a refusal never tells whether an address has an account.
"""

import hashlib

from django.core.cache import cache


def client_ip(request) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is client-controlled unless a trusted proxy rewrites it.
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _key(scope: str, kind: str, value: str) -> str:
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"throttle:{scope}:{kind}:{digest}"


def hit(*, scope: str, account: str, ip: str, account_limit: int, ip_limit: int, window: int) -> bool:
    """Count one attempt for (`account`, `ip`); False (and nothing counted) when either is already at its limit."""
    keys = {_key(scope, "account", account): account_limit, _key(scope, "ip", ip): ip_limit}
    counts = cache.get_many(list(keys))
    if any(counts.get(key, 0) >= limit for key, limit in keys.items()):
        return False
    for key in keys:
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.add(key, 1, timeout=window)
    return True
