"""One transition service for billing's state machines (billing.services.transitions) and the lock-order helper
(billing.locks): illegal moves are refused and change nothing; stale news never moves a row backwards."""

import pytest
from django.db import transaction
from django.db.models import Q

from billing import stripe_client
from billing.exceptions import BillingError, InvalidTransition
from billing.locks import billing_rows_lock
from billing.models import (
    DunningCase,
    DunningStage,
    Invoice,
    InvoiceStatus,
    Refund,
    RefundStatus,
    StripeEvent,
    StripeEventStatus,
)
from billing.services import stripe_events
from billing.services.payments import refunds
from billing.services.transitions import MACHINES, transition_allowed, transition_set
from tests.billing.stripe_support import open_invoice
from tests.factories import CustomerFactory


def test_transition_tables_name_every_state_and_only_states():
    for model, machine in MACHINES.items():
        states = set(machine.states.values)
        assert set(machine.table) == states, model.__name__
        for targets in machine.table.values():
            assert targets <= states, model.__name__


@pytest.mark.parametrize(
    ("row", "to_state", "message"),
    [
        (
            Refund(status=RefundStatus.FAILED),
            RefundStatus.SUCCEEDED,
            "A refund that is failed cannot become succeeded.",
        ),
        (
            DunningCase(stage=DunningStage.RECOVERED),
            DunningStage.PAST_DUE,
            "A dunning case that is recovered (paid) cannot become past due (grace period over).",
        ),
        (
            StripeEvent(status=StripeEventStatus.PROCESSED),
            StripeEventStatus.FAILED,
            "A Stripe event that is processed cannot become failed.",
        ),
        (Invoice(status=InvoiceStatus.PAID), InvoiceStatus.DRAFT, "An invoice that is paid cannot become draft."),
    ],
)
def test_transition_set_refuses_an_illegal_move_and_changes_nothing(row, to_state, message):
    field = MACHINES[type(row)].field
    before = getattr(row, field)

    with pytest.raises(InvalidTransition) as refused:
        transition_set(row, to_state)

    assert refused.value.message == message
    assert getattr(row, field) == before


def test_transition_set_moves_along_the_table_and_returns_the_old_state():
    case = DunningCase(stage=DunningStage.EXHAUSTED)

    assert transition_set(case, DunningStage.RETRYING) == DunningStage.EXHAUSTED  # a new failure starts over
    assert case.stage == DunningStage.RETRYING
    assert not transition_allowed(Refund(status=RefundStatus.PENDING), RefundStatus.PENDING)


def test_stripe_refund_news_never_revives_a_failed_refund():
    refund = Refund(status=RefundStatus.FAILED, stripe_refund_id="re_1", failure_message="Stripe status failed")

    refunds._refund_take_stripe_status(
        refund, stripe_client.Refund(id="re_1", status="succeeded", amount_minor=100, currency="USD")
    )

    assert (refund.status, refund.failure_message) == (RefundStatus.FAILED, "Stripe status failed")


@pytest.mark.django_db
def test_stripe_event_processed_meanwhile_keeps_its_status_when_a_late_run_fails(monkeypatch):
    event = StripeEvent.objects.create(
        stripe_event_id="evt_late", type="payment_intent.succeeded", stripe_created=0, payload={"data": {}}
    )

    def processed_elsewhere_then_fail(stored):
        # another worker finishes the same event while this run is still in its handler
        StripeEvent.objects.filter(pk=stored.pk).update(status=StripeEventStatus.PROCESSED)
        raise BillingError("handler failed")

    monkeypatch.setattr(stripe_events, "_dispatch", processed_elsewhere_then_fail)

    stripe_events.stripe_event_process(event_id=event.pk)

    event.refresh_from_db()
    assert (event.status, event.error) == (StripeEventStatus.PROCESSED, "")


@pytest.mark.django_db
def test_billing_rows_lock_returns_each_models_rows_in_id_order():
    customer = CustomerFactory()
    first, second = open_invoice(customer=customer), open_invoice(customer=customer)
    case = DunningCase.objects.create(invoice=second, customer=customer, started_at=second.issued_at)

    with transaction.atomic():
        locked = billing_rows_lock(
            invoices=Q(pk__in=[second.pk, first.pk]), dunning_cases=Q(invoice_id=second.pk), payments=None
        )
    assert [invoice.pk for invoice in locked.invoices] == [first.pk, second.pk]
    assert locked.dunning_case == case
    assert locked.payments == []
