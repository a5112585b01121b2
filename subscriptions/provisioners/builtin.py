"""Built-in backend: Continuum is the entitlement source of truth, so recording the applied value *is* applying it.

The product being sold reads `GET /api/v1/entitlements/?customer=…` (subscriptions.selectors.entitlements_for_customer).
"""

from typing import Any


class BuiltinProvisioner:
    name = "builtin"

    def push(self, *, customer_id: int, run_id: int | None, changes: list[dict[str, Any]]) -> None:
        return None
