"""A payment marks the customer's health score out of date only when it changes a fact of the score: paying an
overdue invoice does, paying one on time does not (docs/metrics.md, "Recompute on events")."""

from datetime import timedelta

import pytest
import time_machine

from billing.services.health import customer_health_facts
from billing.services.payments import payment_record_manual
from subscriptions import clock
from subscriptions.models import Event, HealthRecomputeMark
from tests.billing.test_webhook_events import _issued  # the same issued invoice as the billing event tests

pytestmark = pytest.mark.django_db


@pytest.fixture
def pinned():
    with time_machine.travel(clock.now(), tick=False) as traveller:
        yield traveller


def _pay(invoice, staff):
    HealthRecomputeMark.objects.all().delete()  # whatever issuing marked: only the payment's mark counts here
    payment_record_manual(invoice_id=invoice.pk, amount_minor=invoice.total_minor, reference="BANK", actor=staff)


def test_paying_on_time_leaves_the_score_alone(customer, staff, ca_tax, pinned):
    invoice = _issued(customer, staff)
    pinned.move_to(clock.now() + timedelta(days=(invoice.due_on - clock.today()).days))  # on the due date itself
    before = customer_health_facts(customer_ids=[customer.pk])[customer.pk]
    _pay(invoice, staff)
    assert Event.objects.filter(type="invoice.paid", customer_id=customer.pk).exists()
    assert not HealthRecomputeMark.objects.filter(customer_id=customer.pk).exists()
    after = customer_health_facts(customer_ids=[customer.pk])[customer.pk]
    assert before == after  # nothing the score reads moved, so nothing needed recomputing


def test_paying_an_overdue_invoice_marks_the_score_for_a_recompute(customer, staff, ca_tax, pinned):
    invoice = _issued(customer, staff)
    pinned.move_to(clock.now() + timedelta(days=(invoice.due_on - clock.today()).days + 3))
    assert customer_health_facts(customer_ids=[customer.pk])[customer.pk]["overdue_invoices"] == 1
    _pay(invoice, staff)
    assert HealthRecomputeMark.objects.filter(customer_id=customer.pk).exists()
    assert customer_health_facts(customer_ids=[customer.pk])[customer.pk]["overdue_invoices"] == 0
