"""API keys, service tokens and short-lived user access tokens.

A secret is `<prefix>_<id>_<random>`: the visible part (`ck_1a2b3c4d`) identifies the key in lists and logs;
only sha256(secret) is stored. 32 random bytes make offline guessing hopeless, so a fast hash is enough
(this is what GitHub and Stripe do for API tokens; a slow password hash would only cost us latency per request).
"""

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from portal.models import AccessToken, ApiKey, ApiKeyRole, ServiceToken
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import ActorKind, Customer, Role, User
from subscriptions.services.audit import audit_record

API_KEY_PREFIX = "ck"
SERVICE_TOKEN_PREFIX = "cst"
ACCESS_TOKEN_PREFIX = "cat"
ACCESS_TOKEN_LIFETIME = timedelta(hours=1)


class ApiKeyError(SubscriptionError):
    code = "api_key_invalid"


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret(kind: str) -> tuple[str, str]:
    """Return (visible prefix, whole secret)."""
    visible = f"{kind}_{secrets.token_hex(4)}"
    return visible, f"{visible}_{secrets.token_urlsafe(32)}"


def secrets_match(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(secret_hash(secret), stored_hash)


def api_key_create(*, customer: Customer, name: str, role: str, actor: User | None) -> tuple[ApiKey, str]:
    """Create an API key for `customer` with `role`; returns the key and its plaintext, which is shown once.

    Only owners (or staff) may create keys: a key can do whatever its role allows without a person behind it.
    """
    name = (name or "").strip()
    if not name:
        raise ApiKeyError("Give the key a name so you can recognise it later.", field="name")
    if len(name) > 100:
        raise ApiKeyError("Key names are at most 100 characters.", field="name")
    if role not in ApiKeyRole.values:
        raise ApiKeyError(
            f"Role must be one of: {', '.join(ApiKeyRole.values)}.",
            field="role",
        )
    _require_owner(customer=customer, actor=actor)
    with transaction.atomic():
        prefix, plaintext = _new_secret(API_KEY_PREFIX)
        key = ApiKey.objects.create(
            customer=customer,
            name=name,
            role=role,
            prefix=prefix,
            key_hash=secret_hash(plaintext),
            created_by=actor,
        )
        audit_record(
            customer=customer,
            actor=actor,
            action="api_key.created",
            obj=key,
            summary=f"API key “{name}” ({prefix}…) created with {key.get_role_display().lower()} access",
            after={"name": name, "role": role, "prefix": prefix},
        )
    return key, plaintext


def api_key_revoke(*, api_key: ApiKey, actor: User | None) -> ApiKey:
    """Revoke `api_key` (idempotent: revoking a revoked key changes nothing). It stops working immediately."""
    _require_owner(customer=api_key.customer, actor=actor)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
        if key.revoked_at is not None:
            return key
        key.revoked_at = timezone.now()
        key.revoked_by = actor
        key.save(update_fields=["revoked_at", "revoked_by"])
        audit_record(
            customer=key.customer,
            actor=actor,
            action="api_key.revoked",
            obj=key,
            summary=f"API key “{key.name}” ({key.prefix}…) revoked",
            before={"revoked": False},
            after={"revoked": True},
        )
    return key


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The active key for `secret`, recording when it was last used (at most once a minute, to spare writes)."""
    key = ApiKey.objects.select_related("customer").filter(key_hash=secret_hash(secret)).first()
    if key is None or key.revoked_at is not None:
        return None
    _touch(key)
    return key


def service_token_create(*, name: str, scopes: list[str], actor: User | None) -> tuple[ServiceToken, str]:
    """Create a service token for the product being sold (staff only); returns the token and its plaintext once."""
    unknown = set(scopes) - set(ServiceToken.Scope.values)
    if unknown or not scopes:
        raise ApiKeyError(f"Scopes must be among: {', '.join(ServiceToken.Scope.values)}.", field="scopes")
    with transaction.atomic():
        prefix, plaintext = _new_secret(SERVICE_TOKEN_PREFIX)
        token = ServiceToken.objects.create(
            name=name, scopes=sorted(scopes), prefix=prefix, key_hash=secret_hash(plaintext), created_by=actor
        )
        audit_record(
            customer=None,
            actor=actor,
            action="service_token.created",
            obj=token,
            summary=f"Service token “{name}” ({prefix}…) created",
            after={"scopes": sorted(scopes)},
        )
    return token, plaintext


def service_token_revoke(*, token: ServiceToken, actor: User | None) -> ServiceToken:
    with transaction.atomic():
        token = ServiceToken.objects.select_for_update().get(pk=token.pk)
        if token.revoked_at is None:
            token.revoked_at = timezone.now()
            token.save(update_fields=["revoked_at"])
            audit_record(
                customer=None,
                actor=actor,
                action="service_token.revoked",
                obj=token,
                summary=f"Service token “{token.name}” ({token.prefix}…) revoked",
            )
    return token


def service_token_authenticate(*, secret: str) -> ServiceToken | None:
    token = ServiceToken.objects.filter(key_hash=secret_hash(secret)).first()
    if token is None or token.revoked_at is not None:
        return None
    _touch(token)
    return token


def access_token_create(*, user: User) -> tuple[AccessToken, str]:
    """A bearer token for `user`, valid for ACCESS_TOKEN_LIFETIME. The caller has checked the password."""
    with transaction.atomic():
        prefix, plaintext = _new_secret(ACCESS_TOKEN_PREFIX)
        token = AccessToken.objects.create(
            user=user,
            prefix=prefix,
            key_hash=secret_hash(plaintext),
            expires_at=timezone.now() + ACCESS_TOKEN_LIFETIME,
            credential_fingerprint=user.get_session_auth_hash(),
        )
        audit_record(
            customer=None,
            actor=user,
            actor_kind=ActorKind.STAFF if user.is_staff else ActorKind.CUSTOMER,
            action="api_token.created",
            obj=token,
            summary=f"API access token {prefix}… issued",
        )
    return token, plaintext


def access_token_authenticate(*, secret: str) -> AccessToken | None:
    """The live token for `secret`: not revoked or expired, its user active, and issued under the user's current
    password (a token from before a password change or reset is refused, as Django refuses such sessions)."""
    token = AccessToken.objects.select_related("user").filter(key_hash=secret_hash(secret)).first()
    if token is None or token.revoked_at is not None or token.expires_at <= timezone.now():
        return None
    if not token.user.is_active:
        return None
    if not hmac.compare_digest(token.credential_fingerprint, token.user.get_session_auth_hash()):
        return None
    _touch(token)
    return token


def user_access_tokens_revoke(*, user: User, reason: str, actor: User | None = None) -> int:
    """Revoke every live access token of `user` now, with one audit event (password reset, staff action).

    Idempotent; returns how many it revoked. Not needed for correctness — a password change by any path ends the
    tokens through their fingerprint, a deactivation through `is_active`, and Django ends sessions in both cases —
    but it leaves the tokens marked revoked, and the trail says why.
    """
    now = timezone.now()
    with transaction.atomic():
        revoked = AccessToken.objects.filter(user=user, revoked_at__isnull=True, expires_at__gt=now).update(
            revoked_at=now
        )
        if revoked:
            actor = actor or user
            audit_record(
                customer=None,
                actor=actor,
                actor_kind=ActorKind.STAFF if actor.is_staff else ActorKind.CUSTOMER,
                action="api_token.revoked_all",
                obj=user,
                summary=f"{revoked} API access token(s) of {user.email} revoked: {reason}",
            )
    return revoked


def _touch(obj) -> None:
    now = timezone.now()
    if obj.last_used_at is None or now - obj.last_used_at > timedelta(minutes=1):
        type(obj).objects.filter(pk=obj.pk).update(last_used_at=now)
        obj.last_used_at = now


def _require_owner(*, customer: Customer, actor: User | None) -> None:
    if actor is None or actor.is_staff:
        return
    if not customer.memberships.filter(user=actor, role=Role.OWNER).exists():
        raise ApiKeyError("Only an owner of this account can manage its API keys.", field=None)
