"""Revenue metrics on the hand-computed fixture (tests/billing/revenue_support.py): every figure worked by hand."""

from datetime import date

import pytest
import time_machine

from billing.services import revenue_metrics
from subscriptions import clock
from tests.billing.revenue_support import EXPECTED_MRR, MONTHS, build_fixture, month

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def pinned():
    with time_machine.travel(clock.now(), tick=False):
        yield


@pytest.fixture
def fixture():
    return build_fixture()


def last_day(k: int) -> date:
    return (month(k + 1).date()).fromordinal(month(k + 1).date().toordinal() - 1)


def test_mrr_by_customer_follows_the_subscription_facts_month_by_month(fixture):
    ids = {name: customer.pk for name, customer in fixture.customers.items()}
    for k in range(MONTHS):
        mrr = revenue_metrics.mrr_by_customer(last_day(k))
        got = {name: (mrr[pk].mrr_minor if pk in mrr else 0) for name, pk in ids.items() if name != "K"}
        expected = {name: EXPECTED_MRR[name][k] for name in got}
        assert got == expected, f"M{k}"
        assert mrr[ids["K"]].currency == "EUR" and mrr[ids["K"]].mrr_minor == 15000
