"""Provisioner backends: where applied entitlements are switched on. Chosen by settings.PROVISIONER_BACKEND.

- `builtin` (default): Continuum itself is the source of truth; the product reads entitlements through the REST API.
- `webhook`: the diff is POSTed, signed, to settings.PROVISIONER_WEBHOOK_URL (docs/provisioning.md).
"""

from django.conf import settings

from subscriptions.provisioners.base import (
    Provisioner,
    ProvisionerError,
    ProvisionerPermanentError,
    ProvisionerTransientError,
)

__all__ = [
    "Provisioner",
    "ProvisionerError",
    "ProvisionerPermanentError",
    "ProvisionerTransientError",
    "provisioner_get",
]


def provisioner_get(name: str | None = None) -> Provisioner:
    """The configured backend (or `name`). An unknown name is a configuration error, reported permanently."""
    name = name or getattr(settings, "PROVISIONER_BACKEND", "builtin") or "builtin"
    if name == "builtin":
        from subscriptions.provisioners.builtin import (
            BuiltinProvisioner,  # local import: backends import this package's base
        )

        return BuiltinProvisioner()
    if name == "webhook":
        from subscriptions.provisioners.webhook import WebhookProvisioner  # local import: loaded only when configured

        return WebhookProvisioner(
            url=getattr(settings, "PROVISIONER_WEBHOOK_URL", ""),
            secret=getattr(settings, "PROVISIONER_WEBHOOK_SECRET", ""),
            timeout=float(getattr(settings, "PROVISIONER_WEBHOOK_TIMEOUT", 5.0)),
        )
    raise ProvisionerPermanentError(f"Unknown PROVISIONER_BACKEND {name!r}; use 'builtin' or 'webhook'.")
