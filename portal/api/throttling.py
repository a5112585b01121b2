"""Rate limits: per credential (API key, token or user), per client address for anonymous calls, and a tight one
for POST /auth/token/ like the login page. Rates come from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], read per
request so they can be tuned by settings."""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from portal.api.principal import principal_of


class _SettingsRateThrottle(SimpleRateThrottle):
    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def __init__(self):
        # SimpleRateThrottle reads THROTTLE_RATES at import time; read the live settings instead.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)


class PrincipalRateThrottle(_SettingsRateThrottle):
    """One bucket per API key / service token / user; anonymous callers share a bucket per address."""

    scope = "api"

    def get_cache_key(self, request, view):
        principal = principal_of(request)
        if principal is None:
            self.scope = "anon"
            self.rate = self.get_rate()
            self.num_requests, self.duration = self.parse_rate(self.rate)
            return self.cache_format % {"scope": "anon", "ident": self.get_ident(request)}
        return self.cache_format % {"scope": "api", "ident": principal.ident}


class TokenObtainRateThrottle(_SettingsRateThrottle):
    """Password guessing through the API is limited like the login form: per address and per e-mail."""

    scope = "auth_token"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenObtainPerEmailRateThrottle(_SettingsRateThrottle):
    scope = "auth_token"

    def get_cache_key(self, request, view):
        email = ""
        if hasattr(request.data, "get"):
            email = str(request.data.get("email", "")).strip().lower()[:254]
        if not email:
            return None
        return self.cache_format % {"scope": "auth_token_email", "ident": email}
