"""Webhook backend: POST the diff as JSON, signed with HMAC-SHA256 over `timestamp + "." + body`.

Headers: `Continuum-Timestamp: <unix seconds>` and `Continuum-Signature: v1=<hex digest>`. A 2xx answer means the
receiver applied every change; anything else (or no answer within the timeout) is a transient error and is retried.
Receivers verify the signature and reject timestamps older than 5 minutes (docs/provisioning.md).
"""

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

from subscriptions.provisioners.base import ProvisionerPermanentError, ProvisionerTransientError

SIGNATURE_VERSION = "v1"
REPLAY_WINDOW_SECONDS = 300


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """The `Continuum-Signature` header value for `body` sent at `timestamp`."""
    message = timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def webhook_verify(
    *, secret: str, timestamp: str, signature: str, body: bytes, now: float | None = None, tolerance: int = 300
) -> bool:
    """Receiver side: True when the signature matches and the timestamp is within `tolerance` seconds of now."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return hmac.compare_digest(expected, signature or "")


class WebhookProvisioner:
    name = "webhook"

    def __init__(self, *, url: str, secret: str, timeout: float = 5.0):
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def push(self, *, customer_id: int, run_id: int | None, changes: list[dict[str, Any]]) -> None:
        if not self.url or not self.url.startswith(("http://", "https://")):
            raise ProvisionerPermanentError("PROVISIONER_WEBHOOK_URL is not set to an http(s) URL.")
        if not self.secret:
            raise ProvisionerPermanentError("PROVISIONER_WEBHOOK_SECRET is not set; refusing to send unsigned diffs.")
        body = json.dumps(
            {"customer_id": customer_id, "run_id": run_id, "changes": changes},
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Continuum-Provisioner/1",
                "Continuum-Timestamp": timestamp,
                "Continuum-Signature": webhook_signature(secret=self.secret, timestamp=timestamp, body=body),
                "Continuum-Run": str(run_id or ""),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            raise ProvisionerTransientError(f"The provisioning webhook answered HTTP {exc.code}.")
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ProvisionerTransientError(f"The provisioning webhook could not be reached: {reason}.")
        if not 200 <= status < 300:
            raise ProvisionerTransientError(f"The provisioning webhook answered HTTP {status}.")
