"""THE registry of change kinds: what a customer may change on a subscription, which service functions preview and
apply it (`<service>_preview` / `<service>_apply` in subscriptions.services.changes) and which parameters it takes.
Billing's wrapper and the portal's pages and API read this table; none keeps its own list."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChangeKindSpec:
    name: str
    service: str  # subscriptions.services.changes.<service>_preview / _apply
    params: tuple[str, ...]  # what the change takes besides the subscription (promotion codes are billing's)

    @property
    def preview_name(self) -> str:
        return f"{self.service}_preview"

    @property
    def apply_name(self) -> str:
        return f"{self.service}_apply"


CHANGE_KINDS: dict[str, ChangeKindSpec] = {
    spec.name: spec
    for spec in (
        ChangeKindSpec("seats", "subscription_change_seats", ("seats",)),
        ChangeKindSpec("package", "subscription_change_package", ("package_slug", "interval")),
        ChangeKindSpec("addon_add", "subscription_addon_add", ("addon_slug",)),
        ChangeKindSpec("addon_remove", "subscription_addon_remove", ("addon_slug",)),
        ChangeKindSpec("cancel", "subscription_cancel", ("reason",)),
        ChangeKindSpec("reactivate", "subscription_reactivate", ()),
    )
}
