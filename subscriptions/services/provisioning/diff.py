"""The diff between desired and applied entitlements: pure, no database, no clock."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from subscriptions.models.provisioning import EntitlementKind
from subscriptions.services.provisioning.desired import DesiredEntitlement, EntitlementKey


@dataclass(frozen=True)
class AppliedEntitlement:
    kind: str
    value: int


@dataclass(frozen=True)
class EntitlementChange:
    """One line of a diff. `value` is the absolute target (None when revoking), never an increment."""

    op: str  # "grant" | "update" | "revoke"
    feature_key: str
    user_id: int | None
    kind: str
    value: int | None
    previous: int | None

    @property
    def key(self) -> EntitlementKey:
        return (self.feature_key, self.user_id)

    def as_json(self) -> dict[str, Any]:
        def shown(value: int | None) -> int | bool | None:
            if value is None or self.kind not in (EntitlementKind.BOOLEAN, EntitlementKind.USER_SEAT):
                return value
            return bool(value)

        return {
            "op": self.op,
            "feature": self.feature_key,
            "user_id": self.user_id,
            "kind": self.kind,
            "value": shown(self.value),
            "previous": shown(self.previous),
        }


def entitlements_diff(
    desired: Mapping[EntitlementKey, DesiredEntitlement], applied: Mapping[EntitlementKey, AppliedEntitlement]
) -> list[EntitlementChange]:
    """The changes that turn `applied` into `desired`, in a stable order. Pure: no database, no clock.

    A key only in `desired` is a grant, only in `applied` a revoke, in both with another value or kind an update.
    """
    changes: list[EntitlementChange] = []
    for key in sorted(set(desired) | set(applied), key=lambda k: (k[0], k[1] if k[1] is not None else -1)):
        want = desired.get(key)
        have = applied.get(key)
        if want is not None and have is None:
            changes.append(EntitlementChange("grant", key[0], key[1], want.kind, want.value, None))
        elif want is None and have is not None:
            changes.append(EntitlementChange("revoke", key[0], key[1], have.kind, None, have.value))
        elif want is not None and have is not None and (want.value != have.value or want.kind != have.kind):
            changes.append(EntitlementChange("update", key[0], key[1], want.kind, want.value, have.value))
    return changes
