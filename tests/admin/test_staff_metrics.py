"""The back office's revenue metrics page (/admin/reports/metrics/): who sees it, that it shows the stored figures
(billing.services.revenue_metrics.metrics_summary, whose formulas tests/billing pins), its charts, a constant number
of queries whatever the number of customers, bad input as a 400, and the reconciliation list."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from billing.services.revenue_metrics import metrics_summary, month_add, month_first, revenue_months_update
from portal.backoffice_metrics import MONTHS_SHOWN, duration, percent
from subscriptions import clock
from subscriptions.money import format_money_staff
from tests.admin.helpers import customer_with_subscription
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/reports/metrics/"
RECONCILIATION_URL = "/admin/reports/metrics/reconciliation/"


def _customers(count: int) -> list:
    customers = [customer_with_subscription(name=f"Customer {i:03d}", seats=2 + i % 7) for i in range(count)]
    this_month = month_first(clock.today())
    revenue_months_update(month_add(this_month, -1))
    revenue_months_update(this_month)
    return customers


def test_anonymous_is_sent_to_the_staff_sign_in(client):
    for url in (URL, RECONCILIATION_URL):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_support_agents_and_staff_without_the_permission_get_403(support_client):
    assert support_client.get(URL).status_code == 403
    assert support_client.get(RECONCILIATION_URL).status_code == 403
    nobody = Client()
    nobody.force_login(UserFactory(email="nogroup@continuum.test", is_staff=True))
    assert nobody.get(URL).status_code == 403


def test_billing_staff_see_the_stored_figures_and_charts(billing_client):
    _customers(3)
    response = billing_client.get(URL)
    assert response.status_code == 200
    summary = metrics_summary(end_month=month_first(clock.today()), currency="USD", months=MONTHS_SHOWN)
    html = response.content.decode()
    assert format_money_staff(summary.mrr_minor, "USD") in html
    assert format_money_staff(summary.arr_minor, "USD") in html
    assert percent(summary.nrr) in html and percent(summary.grr) in html
    assert percent(summary.logo_churn, places=2) in html
    for assumption in summary.ltv.assumptions:
        assert escape(assumption) in html  # LTV's assumptions are shown with it
    # Three charts, each an accessible SVG with a data table.
    assert html.count('role="img"') == 3
    assert "MRR movements by month (USD)" in html and "Cohort retention" in html
    assert html.count('class="chart-data"') == 3
    # One row per month in the month table and in the billing-quality table.
    page = response.context["m"]
    assert len(page.months) == MONTHS_SHOWN and len(page.quality) == MONTHS_SHOWN
    assert 'id="reconciliation-link"' in html


@pytest.mark.parametrize("customers", [2, 25])
def test_the_page_runs_at_most_15_queries_whatever_the_number_of_customers(
    billing_client, django_assert_max_num_queries, customers
):
    _customers(customers)
    billing_client.get(URL)  # warm the session and content-type caches
    with django_assert_max_num_queries(15):
        response = billing_client.get(URL)
    assert response.status_code == 200


def test_the_page_runs_the_same_queries_for_3_and_30_customers(billing_client):
    def page_queries() -> int:
        billing_client.get(URL)  # warm the session and permission caches
        with CaptureQueriesContext(connection) as queries:
            assert billing_client.get(URL).status_code == 200
        return len(queries)

    _customers(3)
    few = page_queries()
    for i in range(27):
        customer_with_subscription(name=f"More {i:03d}")
    revenue_months_update(month_first(clock.today()))
    assert page_queries() == few <= 15


@pytest.mark.parametrize(
    "query",
    ["?month=2026-13", "?month=last", "?month=", "?currency=<script>", "?currency=US"],
)
def test_bad_filters_are_a_400_with_the_problem_never_a_500(billing_client, query):
    response = billing_client.get(URL + query)
    if query == "?month=":
        assert response.status_code == 200  # an empty month means the default, this month
        return
    assert response.status_code == 400
    assert b"errorlist" in response.content and b"<script>" not in response.content


def test_another_currency_and_month_are_chosen_with_the_filter(billing_client):
    response = billing_client.get(URL + "?currency=eur&month=2026-01")
    assert response.status_code == 200
    page = response.context["m"]
    assert page.currency == "EUR" and f"{page.end_month:%Y-%m}" == "2026-01"


def test_reconciliation_lists_the_differences_for_billing_staff(billing_client):
    _customers(2)
    response = billing_client.get(RECONCILIATION_URL)
    assert response.status_code == 200
    assert b'id="reconciliation"' in response.content
    assert billing_client.get(RECONCILIATION_URL + "?month=nope").status_code == 400


def test_formatting_helpers():
    from decimal import Decimal

    assert percent(Decimal("1.0250")) == "102.5%" and percent(None) == "—"
    assert percent(Decimal("0.0125"), places=2) == "1.25%"
    assert [duration(s) for s in (None, 42, 95, 7200, 90000)] == ["—", "42 s", "1 min 35 s", "2 h 0 min", "1 d 1 h"]
