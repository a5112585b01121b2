"""The one transition service of billing's state machines.

Each machine is a `TextChoices` field and one table of allowed moves next to it in billing.models: invoice status
(INVOICE_TRANSITIONS), payment status (PAYMENT_TRANSITIONS), refund status (REFUND_TRANSITIONS), dunning stage
(DUNNING_TRANSITIONS), Stripe-event status (STRIPE_EVENT_TRANSITIONS) and tax-exemption status
(EXEMPTION_TRANSITIONS). Every status write goes through `transition_set`, on a row the caller has locked
(billing.locks); the caller saves it and writes its own status-change or audit rows in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from billing.exceptions import InvalidTransition
from billing.models import (
    DUNNING_TRANSITIONS,
    EXEMPTION_TRANSITIONS,
    INVOICE_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    REFUND_TRANSITIONS,
    STRIPE_EVENT_TRANSITIONS,
    DunningCase,
    DunningStage,
    ExemptionStatus,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    StripeEvent,
    StripeEventStatus,
    TaxExemption,
)


@dataclass(frozen=True)
class Machine:
    field: str
    table: dict[str, frozenset[str]]
    states: type[models.TextChoices]
    noun: str  # with its article, to start the refusal: "An invoice"


MACHINES: dict[type[models.Model], Machine] = {
    Invoice: Machine("status", INVOICE_TRANSITIONS, InvoiceStatus, "An invoice"),
    Payment: Machine("status", PAYMENT_TRANSITIONS, PaymentStatus, "A payment"),
    Refund: Machine("status", REFUND_TRANSITIONS, RefundStatus, "A refund"),
    DunningCase: Machine("stage", DUNNING_TRANSITIONS, DunningStage, "A dunning case"),
    StripeEvent: Machine("status", STRIPE_EVENT_TRANSITIONS, StripeEventStatus, "A Stripe event"),
    TaxExemption: Machine("status", EXEMPTION_TRANSITIONS, ExemptionStatus, "An exemption"),
}


def transition_allowed(obj: models.Model, to_state: str) -> bool:
    """Whether the table allows `obj` to move from its current state to `to_state` (staying put is not a move)."""
    machine = MACHINES[type(obj)]
    return to_state in machine.table.get(getattr(obj, machine.field), frozenset())


def transition_set(obj: models.Model, to_state: str) -> str:
    """Move a LOCKED row to `to_state` in memory (the caller saves it) and return the state it left. Raises
    InvalidTransition, changing nothing, when the table does not allow the move."""
    machine = MACHINES[type(obj)]
    from_state = getattr(obj, machine.field)
    if not transition_allowed(obj, to_state):
        raise InvalidTransition(
            f"{machine.noun} that is {machine.states(from_state).label.lower()} cannot become "
            f"{machine.states(to_state).label.lower()}."
        )
    setattr(obj, machine.field, to_state)
    return from_state
