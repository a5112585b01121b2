"""The provisioner interface and its errors."""

from typing import Any, Protocol


class ProvisionerError(Exception):
    """The backend did not confirm the change."""


class ProvisionerTransientError(ProvisionerError):
    """Worth retrying: a timeout, a refused connection, a non-2xx answer."""


class ProvisionerPermanentError(ProvisionerError):
    """Retrying cannot help (e.g. the backend is misconfigured); entitlements are marked failed at once."""


class Provisioner(Protocol):
    name: str

    def push(self, *, customer_id: int, run_id: int | None, changes: list[dict[str, Any]]) -> None:
        """Apply `changes` (absolute target values, so applying twice is harmless) or raise ProvisionerError.

        Only called with a non-empty list. Returning means every change is applied.
        """
