"""Encryption at rest for secrets Continuum must read back in clear (webhook signing secrets).

A signing secret cannot be stored as a hash like an API key: every delivery needs it to compute the HMAC. So it is
stored encrypted under a key that lives outside the database (``WEBHOOK_SECRET_KEYS``), and a database dump or a
backup alone reveals no secret.

The box is `cryptography`'s MultiFernet (AES-128-CBC with HMAC-SHA256, encrypt-then-MAC; docs/decisions.md "Webhook
secrets at rest"). Each configured key string (newest first; empty: one derived from SECRET_KEY) is turned into a
Fernet key with HKDF-SHA256, so the setting keeps its existing values. A token is a plain Fernet token: the first key
encrypts, any listed key decrypts. Rotation: put the new key first in ``WEBHOOK_SECRET_KEYS``, run
``manage.py webhook_secrets_reencrypt``, then remove the old key.

Tokens written by the earlier hand-built box (``v1.<key id>.<base64url(nonce | ciphertext | tag)>``, an HMAC-SHA256
keystream with an HMAC-SHA256 tag) still decrypt, and `secret_needs_reencrypt` flags them, so the command rewrites
them as Fernet tokens; once none are left (the command reports 0), `_v1_decrypt` can be deleted.
"""

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

V1 = "v1"
V1_NONCE_BYTES = 16
V1_TAG_BYTES = 32


class SecretBoxError(ValueError):
    """A token that is malformed, was tampered with, or was made under a key that is no longer configured."""


def _keys() -> list[bytes]:
    configured = list(getattr(settings, "WEBHOOK_SECRET_KEYS", None) or [])
    if not configured:
        # Zero-setup default: derived from SECRET_KEY (set WEBHOOK_SECRET_KEYS in production: docs/webhooks.md).
        configured = ["derived:" + settings.SECRET_KEY]
    return [key.encode() for key in configured]


def _fernet(key: bytes) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"continuum-secretbox-fernet").derive(key)
    return Fernet(base64.urlsafe_b64encode(derived))


def _box() -> MultiFernet:
    return MultiFernet([_fernet(key) for key in _keys()])


def _unknown_key() -> SecretBoxError:
    return SecretBoxError(
        "not authentic under any configured key (WEBHOOK_SECRET_KEYS): was its key removed before re-encrypting, "
        "or was the value altered?"
    )


def secret_encrypt(plaintext: str) -> str:
    """Encrypt under the first configured key (a fresh random IV each time: equal secrets give unequal tokens)."""
    return _box().encrypt(plaintext.encode()).decode()


def secret_decrypt(token: str) -> str:
    """The plaintext, with any configured key; SecretBoxError if the token is not authentic under one of them."""
    if token.startswith(f"{V1}."):
        return _v1_decrypt(token)
    try:
        return _box().decrypt(token.encode()).decode()
    except InvalidToken as error:
        raise _unknown_key() from error


def secret_needs_reencrypt(token: str) -> bool:
    """True when the token is in the old v1 format or was made under a key other than the current (first) one."""
    if token.startswith(f"{V1}."):
        return True
    try:
        _fernet(_keys()[0]).decrypt(token.encode())
    except InvalidToken:
        return True
    return False


# --- the earlier box, read-only: its tokens decrypt until `webhook_secrets_reencrypt` has rewritten them ---------


def _v1_key_id(key: bytes) -> str:
    return hashlib.sha256(b"continuum-secretbox-id" + key).hexdigest()[:8]


def _v1_decrypt(token: str) -> str:
    try:
        _, key_id, encoded = token.split(".", 2)
        body = base64.urlsafe_b64decode(encoded.encode())
    except (ValueError, TypeError) as error:
        raise SecretBoxError("not an encrypted secret") from error
    if len(body) < V1_NONCE_BYTES + V1_TAG_BYTES:
        raise SecretBoxError("not an encrypted secret")
    nonce, ciphertext, tag = body[:V1_NONCE_BYTES], body[V1_NONCE_BYTES:-V1_TAG_BYTES], body[-V1_TAG_BYTES:]
    for key in _keys():
        if _v1_key_id(key) != key_id:
            continue
        encryption = hmac.new(key, b"continuum-secretbox-encrypt", hashlib.sha256).digest()
        authentication = hmac.new(key, b"continuum-secretbox-authenticate", hashlib.sha256).digest()
        expected = hmac.new(authentication, f"{V1}.{key_id}.".encode() + nonce + ciphertext, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, expected):
            raise SecretBoxError("the encrypted secret was altered")
        stream = b"".join(
            hmac.new(encryption, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest()
            for counter in range((len(ciphertext) + 31) // 32)
        )
        return bytes(a ^ b for a, b in zip(ciphertext, stream[: len(ciphertext)], strict=True)).decode()
    raise SecretBoxError(f"no configured key {key_id} (WEBHOOK_SECRET_KEYS): was it removed before re-encrypting?")
