"""The entitlement state machine (ENTITLEMENT_TRANSITIONS): the one place a row's state changes."""

from subscriptions.exceptions import InvalidTransition
from subscriptions.models import ENTITLEMENT_TRANSITIONS
from subscriptions.models.provisioning import Entitlement, EntitlementState

# States a change is announced in (entitlement.updated): applied, revoked, or given up on.
EVENT_STATES = (EntitlementState.ACTIVE, EntitlementState.REVOKED, EntitlementState.FAILED)


def entitlement_transition(row: Entitlement, new_state: str) -> bool:
    """Move `row` to `new_state` if the table allows it. Returns whether anything changed."""
    if row.state == new_state:
        return False
    if new_state not in ENTITLEMENT_TRANSITIONS[row.state]:
        raise InvalidTransition(f"An entitlement cannot go from {row.state} to {new_state}.")
    row.state = new_state
    return True
