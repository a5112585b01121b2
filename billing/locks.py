"""Locking several billing rows at once, always in the same order (in the spirit of Saleor's lock_objects.py).

The order, across models: invoice → payment → refund → dunning case; within one model, ascending primary key.
Two transactions that both follow it can wait for each other but never deadlock: applying a card payment (invoice,
its payment, then the invoice's dunning case), a dunning retry or escalation (invoice, then its case), a refund
(the payment, then its refunds) and a Stripe refund sync (the payment, then its refunds) all take their locks here.
A service that needs one row only may lock it directly (`invoice_lock`); as soon as a second billing row joins, it
comes here. docs/payments.md, "Locks", says the same for readers of the docs.

Only each model's own row is locked (`FOR UPDATE OF self`): the related rows fetched with it for convenience
(customer, invoice) are read, not locked, so no lock is taken outside this order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Q

from billing.models import DunningCase, Invoice, Payment, Refund

# (model, what is fetched with it) in lock order.
LOCK_ORDER = (
    (Invoice, ("customer",)),
    (Payment, ("invoice", "customer")),
    (Refund, ("payment__customer",)),
    (DunningCase, ("invoice__customer",)),
)


@dataclass
class Locked:
    invoices: list[Invoice] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    refunds: list[Refund] = field(default_factory=list)
    dunning_cases: list[DunningCase] = field(default_factory=list)

    @property
    def invoice(self) -> Invoice | None:
        return self.invoices[0] if self.invoices else None

    @property
    def payment(self) -> Payment | None:
        return self.payments[0] if self.payments else None

    @property
    def refund(self) -> Refund | None:
        return self.refunds[0] if self.refunds else None

    @property
    def dunning_case(self) -> DunningCase | None:
        return self.dunning_cases[0] if self.dunning_cases else None


def billing_rows_lock(
    *,
    invoices: Q | None = None,
    payments: Q | None = None,
    refunds: Q | None = None,
    dunning_cases: Q | None = None,
) -> Locked:
    """Lock the rows each filter selects (None: none of that model), in LOCK_ORDER and primary-key order, and return
    them. Must run inside the caller's transaction, which holds the locks until it ends (Django refuses
    select_for_update outside one)."""
    locked = Locked()
    wanted = {Invoice: invoices, Payment: payments, Refund: refunds, DunningCase: dunning_cases}
    into = {
        Invoice: locked.invoices,
        Payment: locked.payments,
        Refund: locked.refunds,
        DunningCase: locked.dunning_cases,
    }
    for model, related in LOCK_ORDER:
        condition = wanted[model]
        if condition is None:
            continue
        rows = model.objects.select_for_update(of=("self",)).select_related(*related).filter(condition).order_by("pk")
        into[model].extend(rows)
    return locked
