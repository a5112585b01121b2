"""`Authorization: Bearer <secret>` for customer API keys (ck_…), user access tokens (cat_…) and service tokens (cst_…).

The prefix says which table to look in; the secret is compared by its sha256 only.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from portal.api.principal import ApiKeyUser
from portal.services.api_keys import (
    ACCESS_TOKEN_PREFIX,
    API_KEY_PREFIX,
    SERVICE_TOKEN_PREFIX,
    access_token_authenticate,
    api_key_authenticate,
    service_token_authenticate,
)


class BearerAuthentication(BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.encode():
            return None
        if len(header) != 2:
            raise AuthenticationFailed("Send the key as 'Authorization: Bearer <key>'.", code="authentication_failed")
        try:
            secret = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("That key is not valid.", code="authentication_failed")
        kind = secret.split("_", 1)[0]
        if kind == API_KEY_PREFIX:
            key = api_key_authenticate(secret=secret)
            if key is not None:
                return ApiKeyUser(key), key
        elif kind == ACCESS_TOKEN_PREFIX:
            token = access_token_authenticate(secret=secret)
            if token is not None:
                return token.user, token
        elif kind == SERVICE_TOKEN_PREFIX:
            token = service_token_authenticate(secret=secret)
            if token is not None:
                return ApiKeyUser(token), token
        raise AuthenticationFailed("That key is not valid, has expired or was revoked.", code="authentication_failed")

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class CsrfSessionAuthentication(SessionAuthentication):
    """The portal's own pages call the API with their session cookie; CSRF is enforced for unsafe methods."""


class BearerAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "portal.api.authentication.BearerAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A customer API key (ck_…), an access token from /api/v1/auth/token/ (cat_…), "
            "or a service token (cst_…).",
        }


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = "portal.api.authentication.CsrfSessionAuthentication"
    name = "cookieAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "cookie", "name": "sessionid"}
