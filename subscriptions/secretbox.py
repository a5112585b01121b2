"""Encryption at rest for secrets Continuum must read back in clear (webhook signing secrets).

A signing secret cannot be stored as a hash like an API key: every delivery needs it to compute the HMAC. So it is
stored encrypted under a key that lives outside the database (``WEBHOOK_SECRET_KEYS``), and a database dump or a
backup alone reveals no secret.

The `cryptography` package (Fernet) is not pinned yet (it is installable; moving to MultiFernet is an open
follow-up), so the box is built from the standard library only, as encrypt-then-MAC with HMAC-SHA256 as the PRF
(docs/decisions.md "Webhook secrets at rest"):

- per key, two sub-keys are derived with HMAC-SHA256 (one to encrypt, one to authenticate);
- the plaintext is XORed with an HMAC-SHA256 counter-mode keystream under a fresh 16-byte random nonce;
- an HMAC-SHA256 tag covers the version, key id, nonce and ciphertext, and is checked in constant time before
  anything is decrypted.

Token: ``v1.<key id>.<base64url(nonce | ciphertext | tag)>``. The key id (8 hex digits of the key's SHA-256) says
which key to use, so keys can be rotated: put the new key first in ``WEBHOOK_SECRET_KEYS``, run
``manage.py webhook_secrets_reencrypt``, then remove the old key. The version prefix leaves room for a later switch
to Fernet without a flag day.
"""

import base64
import hashlib
import hmac
import secrets

from django.conf import settings

VERSION = "v1"
NONCE_BYTES = 16
TAG_BYTES = 32


class SecretBoxError(ValueError):
    """A token that is malformed, was tampered with, or was made under a key that is no longer configured."""


def _keys() -> list[bytes]:
    configured = list(getattr(settings, "WEBHOOK_SECRET_KEYS", None) or [])
    if not configured:
        # Zero-setup default: derived from SECRET_KEY (set WEBHOOK_SECRET_KEYS in production: docs/webhooks.md).
        configured = ["derived:" + settings.SECRET_KEY]
    return [key.encode() for key in configured]


def _key_id(key: bytes) -> str:
    return hashlib.sha256(b"continuum-secretbox-id" + key).hexdigest()[:8]


def _subkeys(key: bytes) -> tuple[bytes, bytes]:
    encryption = hmac.new(key, b"continuum-secretbox-encrypt", hashlib.sha256).digest()
    authentication = hmac.new(key, b"continuum-secretbox-authenticate", hashlib.sha256).digest()
    return encryption, authentication


def _keystream(encryption_key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(encryption_key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def _tag(authentication_key: bytes, key_id: str, nonce: bytes, ciphertext: bytes) -> bytes:
    header = f"{VERSION}.{key_id}.".encode()
    return hmac.new(authentication_key, header + nonce + ciphertext, hashlib.sha256).digest()


def secret_encrypt(plaintext: str) -> str:
    """Encrypt under the first configured key (a new random nonce each time: equal secrets give unequal tokens)."""
    key = _keys()[0]
    encryption_key, authentication_key = _subkeys(key)
    key_id = _key_id(key)
    data = plaintext.encode()
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = bytes(a ^ b for a, b in zip(data, _keystream(encryption_key, nonce, len(data)), strict=True))
    body = nonce + ciphertext + _tag(authentication_key, key_id, nonce, ciphertext)
    return f"{VERSION}.{key_id}.{base64.urlsafe_b64encode(body).decode()}"


def secret_decrypt(token: str) -> str:
    """The plaintext, with any configured key; SecretBoxError if the token is not authentic under one of them."""
    try:
        version, key_id, encoded = token.split(".", 2)
        body = base64.urlsafe_b64decode(encoded.encode())
    except (ValueError, TypeError) as error:
        raise SecretBoxError("not an encrypted secret") from error
    if version != VERSION or len(body) < NONCE_BYTES + TAG_BYTES:
        raise SecretBoxError("not an encrypted secret")
    nonce, ciphertext, tag = body[:NONCE_BYTES], body[NONCE_BYTES:-TAG_BYTES], body[-TAG_BYTES:]
    for key in _keys():
        if _key_id(key) != key_id:
            continue
        encryption_key, authentication_key = _subkeys(key)
        if not hmac.compare_digest(tag, _tag(authentication_key, key_id, nonce, ciphertext)):
            raise SecretBoxError("the encrypted secret was altered")
        stream = _keystream(encryption_key, nonce, len(ciphertext))
        return bytes(a ^ b for a, b in zip(ciphertext, stream, strict=True)).decode()
    raise SecretBoxError(f"no configured key {key_id} (WEBHOOK_SECRET_KEYS): was it removed before re-encrypting?")


def secret_needs_reencrypt(token: str) -> bool:
    """True when the token was made under a key other than the current (first) one."""
    return not token.startswith(f"{VERSION}.{_key_id(_keys()[0])}.")
