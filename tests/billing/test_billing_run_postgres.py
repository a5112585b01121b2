"""Two billing runs at once over the same due subscriptions, on PostgreSQL (SQLite serialises writers, so the race
cannot happen there): the batch renewal's row locks queue the second run behind the first, which then finds the
periods already renewed — every subscription renews once and every period is billed once."""

import threading

import pytest
from django.db import connection, connections

from billing.models import Invoice, InvoiceKind
from billing.services.billing_run import billing_run
from subscriptions.models import AuditEvent, Subscription
from tests.factories import BillingProfileFactory, CustomerFactory, SubscriptionFactory, utc

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_billing_run_two_runs_at_once_renew_and_bill_each_period_once():
    assert connection.vendor == "postgresql"
    for n in range(30):
        customer = CustomerFactory(name=f"Concurrent {n}")
        BillingProfileFactory(customer=customer)
        SubscriptionFactory(customer=customer, current_period_start=utc(2026, 10, 1))
    billing_run(as_of=utc(2026, 10, 2), finalize=False)  # October drafted
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=10)
            results.append(billing_run(as_of=utc(2026, 12, 1, 1), chunk_size=7, finalize=False))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(r.renewed for r in results) == 30  # each subscription renewed by exactly one of the runs
    assert sum(r.drafted for r in results) == 60  # November and December, once each
    assert Invoice.objects.filter(kind=InvoiceKind.REGULAR).count() == 90
    assert set(Subscription.objects.values_list("current_period_start", "version")) == {(utc(2026, 12, 1), 2)}
    assert AuditEvent.objects.filter(action="subscription.renewed").count() == 30
