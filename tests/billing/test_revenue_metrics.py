"""Revenue metrics on the hand-computed fixture (tests/billing/revenue_support.py): every figure worked by hand."""

from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.models import RevenueMonth
from billing.services import revenue_metrics
from billing.tasks.revenue_metrics import revenue_metrics_update_task
from subscriptions import clock
from subscriptions.models import Subscription
from tests.billing.revenue_support import EXPECTED_MRR, MONTHS, build_fixture, month
from tests.factories import SubscriptionFactory

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


# Month-end USD MRR, customers and movements, M0 … M13, from the table in revenue_support.py.
EXPECTED_TOTAL = [
    73333,
    96833,
    91833,
    94833,
    107833,
    104833,
    95833,
    105833,
    91833,
    93500,
    93500,
    103500,
    103500,
    103500,
]
EXPECTED_CUSTOMERS = [6, 8, 8, 8, 9, 9, 8, 9, 8, 8, 8, 9, 9, 9]
EXPECTED_MOVES = {  # month: (new, expansion, contraction, churned, reactivation)
    0: (73333, 0, 0, 0, 0),
    1: (23500, 0, 0, 0, 0),  # G 11000 + J 12500
    2: (5000, 0, 0, -10000, 0),  # F new; I canceled now
    3: (0, 3000, 0, 0, 0),  # B +3 seats
    4: (10000, 3000, 0, 0, 0),  # H after its trial; G's add-on
    5: (0, 0, -3000, 0, 0),  # E's decrease at its renewal
    6: (0, 6000, 0, -15000, 0),  # F's upgrade; D ended at its period end
    7: (0, 0, 0, 0, 10000),  # I subscribes again
    8: (0, 0, 0, -14000, 0),  # G canceled now
    9: (0, 1667, 0, 0, 0),  # J 12 seats: 14167 − 12500
    10: (0, 0, 0, 0, 0),
    11: (10000, 0, 0, 0, 0),  # L
    12: (0, 0, 0, 0, 0),
    13: (0, 0, 0, 0, 0),
}


@pytest.fixture
def computed(fixture):
    revenue_metrics.revenue_months_backfill(months=MONTHS, until=month(MONTHS - 1).date())
    return fixture


def test_stored_months_pin_mrr_arr_movements_retention_ltv_and_cohorts(computed, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):
        summary = revenue_metrics.metrics_summary(end_month=month(13).date(), currency="USD", months=14)
    assert [m.month for m in summary.months] == [month(k).date() for k in range(MONTHS)]
    assert [m.mrr_minor for m in summary.months] == EXPECTED_TOTAL
    assert [m.arr_minor for m in summary.months] == [12 * v for v in EXPECTED_TOTAL]
    assert [m.customers_end for m in summary.months] == EXPECTED_CUSTOMERS
    for k, moves in EXPECTED_MOVES.items():
        m = summary.months[k]
        assert (m.new_minor, m.expansion_minor, m.contraction_minor, m.churned_minor, m.reactivation_minor) == moves
        assert m.net_movement_minor == EXPECTED_TOTAL[k] - (EXPECTED_TOTAL[k - 1] if k else 0)
    assert (summary.months[2].churned_customers, summary.months[7].reactivated_customers) == (1, 1)
    assert summary.months[1].new_customers == 2
    # NRR/GRR, trailing 12 months. At M12 the cohort is M0's payers A B C D E I (73333): now 15000 + 13000 + 8333
    # + 0 + 12000 + 10000 = 58333 → 0.7955; capped at their start: 15000 + 10000 + 8333 + 0 + 12000 + 10000 = 55333.
    assert (summary.months[12].nrr, summary.months[12].grr) == (Decimal("0.7955"), Decimal("0.7545"))
    # At M13 the cohort is M1's payers (96833, adds G and J): net 72500, gross 67833.
    assert (summary.nrr, summary.grr) == (Decimal("0.7487"), Decimal("0.7005"))
    assert summary.months[11].nrr is None  # no customers 12 months before M11's end (M-1)
    # Logo churn: M6 lost D of the 9 paying at M5's end; ARPA M13 = 103500 ÷ 9.
    assert summary.months[6].logo_churn == Decimal("0.1111")
    assert summary.logo_churn == Decimal("0.0000")
    assert summary.arpa_minor == 11500
    # LTV: churn over M2 … M13 = 3 (I, D, G) of 101 customer-months (the paying customers at each month's start:
    # 8 + 8 + 8 + 9 + 9 + 8 + 9 + 8 + 8 + 8 + 9 + 9); 11500 × 0.80 × 101 ÷ 3 = 309733.33 → 309733.
    assert summary.ltv.ltv_minor == 309733
    assert summary.ltv.monthly_churn_rate == Decimal("0.029703")
    assert (summary.ltv.churned_customers, summary.ltv.customer_months) == (3, 101)
    assert any("80%" in line for line in summary.ltv.assumptions)
    # Cohorts by first paying month-end: M0 A B C D E I (I leaves in M2 and is back in M7; D leaves in M6).
    cohorts = {row.cohort: row for row in summary.cohorts}
    m0 = cohorts[month(0).date()]
    assert m0.customers == 6
    assert m0.retained == (6, 6, 5, 5, 5, 5, 4, 5, 5, 5, 5, 5, 5, 5)
    assert cohorts[month(1).date()].retained == (2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1)  # G, J; G canceled in M8
    assert {row.cohort: row.customers for row in summary.cohorts} == {
        month(0).date(): 6,
        month(1).date(): 2,
        month(2).date(): 1,  # F
        month(4).date(): 1,  # H (M3 ended in its trial)
        month(11).date(): 1,  # L
    }
    eur = revenue_metrics.metrics_summary(end_month=month(13).date(), currency="EUR")
    assert eur.mrr_minor == 15000 and eur.nrr == Decimal("1.0000") and eur.ltv.ltv_minor is None
    assert summary.currencies == ("EUR", "USD")


def test_recomputing_a_month_is_idempotent_and_the_summary_queries_do_not_grow_with_customers(computed):
    before = revenue_metrics.metrics_summary(end_month=month(13).date(), currency="USD")
    with CaptureQueriesContext(connection) as few:
        revenue_metrics.metrics_summary(end_month=month(13).date(), currency="USD")
    more = SubscriptionFactory.create_batch(30, current_period_start=month(13), package=computed.catalog.team)
    Subscription.objects.filter(pk__in=[sub.pk for sub in more]).update(created_at=month(13))  # began in M13
    revenue_metrics.revenue_months_update(month(13).date())
    with CaptureQueriesContext(connection) as many:
        grown = revenue_metrics.metrics_summary(end_month=month(13).date(), currency="USD")
    assert grown.months[-1].customers_end == 9 + 30
    assert len(many) == len(few) <= 15
    revenue_metrics.revenue_months_update(month(13).date())
    RevenueMonth.objects.filter(month=month(13).date()).delete()
    revenue_metrics.revenue_months_update(month(13).date())
    revenue_metrics.revenue_months_update(month(6).date())
    revenue_metrics.revenue_months_update(month(6).date())
    after = revenue_metrics.metrics_summary(end_month=month(13).date(), currency="USD")
    assert after.months[:-1] == before.months[:-1]
    assert RevenueMonth.objects.filter(month=month(6).date(), currency="USD").count() == 1


def test_backfill_command_and_nightly_task_recompute_the_months(fixture):
    call_command(
        "revenue_metrics_backfill", "--months", "3", "--until", month(13).date().isoformat(), stdout=StringIO()
    )
    assert sorted(RevenueMonth.objects.filter(currency="USD").values_list("month", flat=True)) == [
        month(k).date() for k in (11, 12, 13)
    ]
    assert revenue_metrics_update_task() == [month(13).date().isoformat(), month(14).date().isoformat()]
    assert settings.CELERY_BEAT_SCHEDULE["billing-revenue-metrics-nightly"]["task"] == "billing.revenue_metrics_update"


def test_reconciliation_lists_what_no_invoice_bills(fixture):
    # The fixture's history was built without the billing run: nothing is invoiced, so every customer paying at
    # M13's end is a difference of its whole MRR, "not_invoiced"; H's trial month (M3) is 0 on both sides.
    differences = revenue_metrics.mrr_reconciliation(month(13).date())
    by_customer = {d.customer_id: d for d in differences}
    ids = {name: customer.pk for name, customer in fixture.customers.items()}
    paying = {name for name, series in EXPECTED_MRR.items() if series[13]}
    assert set(by_customer) == {ids[name] for name in paying} | {ids["K"]}
    for name in paying:
        d = by_customer[ids[name]]
        assert (d.fact_mrr_minor, d.invoiced_mrr_minor, d.difference_minor) == (
            EXPECTED_MRR[name][13],
            0,
            EXPECTED_MRR[name][13],
        )
        assert d.reasons == ("not_invoiced",)
    assert ids["H"] not in {d.customer_id for d in revenue_metrics.mrr_reconciliation(month(3).date())}
