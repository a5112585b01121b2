"""The back office's customer health page (/admin/reports/health/): who sees it, the at-risk list by MRR at stake,
the weights editor (preview, save, bad input) and the CSV export."""

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.health import formulas
from billing.models import CustomerHealthSnapshot, HealthWeights
from billing.services.revenue_metrics import mrr_by_customer
from portal import backoffice_health
from portal.views.staff_metrics import csv_safe
from subscriptions import clock
from subscriptions.models import AuditEvent
from subscriptions.money import minor_to_major
from tests.admin.helpers import customer_with_subscription
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

URL = "/admin/reports/health/"
CSV_URL = "/admin/reports/health/customers.csv"
WEIGHTS = {**formulas.DEFAULT_WEIGHTS, "at_risk_below": 50}


def snapshot(customer, *, score, stage, explanation="", components=None):
    return CustomerHealthSnapshot.objects.create(
        customer=customer,
        computed_at=clock.now(),
        score=score,
        stage=stage,
        components=components or dict.fromkeys(formulas.COMPONENTS, score),
        facts={},
        weights=WEIGHTS,
        explanation=explanation,
    )


@pytest.fixture
def world():
    """Three at-risk customers of different size, one healthy one whose only weak spot is payment."""
    small = customer_with_subscription(name="Small Co", seats=6)
    big = customer_with_subscription(name="Big Corp", seats=12)
    mid = customer_with_subscription(name="Mid Ltd", seats=8)
    fine = customer_with_subscription(name="Fine Inc", seats=3)
    snapshot(small, score=20, stage="at_risk", explanation="1 invoice(s) overdue, 12 days past due")
    snapshot(big, score=40, stage="at_risk", explanation="7 of 12 seats unassigned")
    snapshot(mid, score=45, stage="at_risk")
    components = dict.fromkeys(formulas.COMPONENTS, 100) | {"payment": 0}
    snapshot(fine, score=75, stage="established", components=components)
    return {"small": small, "big": big, "mid": mid, "fine": fine}


def test_anonymous_and_customers_are_sent_to_the_staff_sign_in(client, world):
    for url in (URL, CSV_URL):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    customer_user = UserFactory()
    member = Client()
    member.force_login(customer_user)
    assert "/admin/login/" in member.get(URL)["Location"]


def test_staff_without_the_permission_get_403(world):
    staff = Client()
    staff.force_login(UserFactory(email="nogroup@continuum.test", is_staff=True))
    assert staff.get(URL).status_code == 403
    assert staff.get(CSV_URL).status_code == 403
    assert staff.post(URL, {**WEIGHTS, "save": "1"}).status_code == 403


def test_at_risk_list_sorted_by_mrr_at_stake_with_score_stage_explanation_renewal_and_360_link(support_client, world):
    mrr = mrr_by_customer(clock.today())
    response = support_client.get(URL)
    assert response.status_code == 200
    at_risk = response.context["overview"].at_risk
    assert [row.name for row in at_risk] == sorted(
        ["Small Co", "Big Corp", "Mid Ltd"], key=lambda name: -mrr[world[_key(name)].pk].mrr_minor
    )
    assert [row.name for row in at_risk] == ["Big Corp", "Mid Ltd", "Small Co"]  # 12, 8 and 6 seats
    html = response.content.decode()
    assert "Fine Inc" not in html.split('id="at-risk-list"')[1].split("</table>")[0]
    assert "1 invoice(s) overdue, 12 days past due" in html
    assert reverse("admin:subscriptions_customer_change", args=[world["big"].pk]) in html
    big = at_risk[0]
    assert big.mrr_minor == mrr[world["big"].pk].mrr_minor > 0
    assert big.mrr_display in html
    assert big.renews_on is not None and f"{big.renews_on:%Y-%m-%d}" in html
    assert "Seat adoption 40 (weight 25)" in html
    assert 'role="img"' in html and "Health score distribution" in html  # the histogram


def _key(name: str) -> str:
    return {"Small Co": "small", "Big Corp": "big", "Mid Ltd": "mid"}[name]


def test_billing_staff_see_the_page_but_no_save_button(billing_client, world):
    response = billing_client.get(URL)
    assert response.status_code == 200
    assert b'name="save"' not in response.content and b'name="preview"' in response.content
    assert billing_client.post(URL, {**WEIGHTS, "save": "1"}).status_code == 403
    assert not HealthWeights.objects.exists()


def test_preview_shows_who_would_join_and_leave_and_saves_nothing(support_client, world):
    # Payment weighs everything: Fine Inc (payment 0) joins, the others' flat components keep them at risk.
    weights = dict.fromkeys(formulas.COMPONENTS, 0) | {"payment": 100, "at_risk_below": 30}
    response = support_client.post(URL, {**weights, "preview": "1"})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert [row.name for row in preview["joining"]] == ["Fine Inc"]
    assert sorted(row.name for row in preview["leaving"]) == ["Big Corp", "Mid Ltd"]  # 40 and 45 ≥ 30
    assert preview["at_risk_count"] == 2  # Small Co (20) and Fine Inc (0)
    assert b"Would become at risk" in response.content
    assert not HealthWeights.objects.exists()


def test_save_stores_the_weights_audited_and_redirects(support_client, support_user, world):
    weights = {**formulas.DEFAULT_WEIGHTS, "payment": 40, "at_risk_below": 60}
    response = support_client.post(URL, {**weights, "save": "1"})
    assert response.status_code == 302 and response["Location"] == URL
    saved = HealthWeights.objects.get()
    assert (saved.payment, saved.at_risk_below, saved.created_by) == (40, 60, support_user)
    event = AuditEvent.objects.get(action="health.weights_changed")
    assert event.actor == support_user
    assert event.before["payment"] == 25 and event.after["payment"] == 40 and event.after["at_risk_below"] == 60
    page = support_client.get(URL)
    assert page.context["form"].initial["payment"] == 40  # the form shows the weights now in force
    assert b"Weights saved" in page.content


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict.fromkeys(formulas.COMPONENTS, 0), "At least one weight must be above zero."),
        ({"payment": -5}, "greater than or equal to 0"),
        ({"payment": "lots"}, "Enter a whole number."),
        ({"at_risk_below": 101}, "less than or equal to 100"),
        ({"activity": ""}, "This field is required."),
        ({"effort": "1e400"}, "Enter a whole number."),
    ],
)
def test_bad_weights_give_form_errors_and_save_nothing(support_client, world, bad, message):
    for intent in ("save", "preview"):
        response = support_client.post(URL, {**WEIGHTS, **bad, intent: "1"})
        assert response.status_code == 400
        assert message in response.content.decode()
    assert not HealthWeights.objects.exists()
    assert not AuditEvent.objects.filter(action="health.weights_changed").exists()


def test_csv_lists_every_customer_with_score_stage_mrr_and_renewal(billing_client, world):
    response = billing_client.get(CSV_URL)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_name = {row["customer"]: row for row in rows}
    assert set(by_name) == {"Small Co", "Big Corp", "Mid Ltd", "Fine Inc"}
    mrr = mrr_by_customer(clock.today())[world["big"].pk]
    big = by_name["Big Corp"]
    assert (big["score"], big["stage"], big["currency"]) == ("40", "At risk", mrr.currency)
    assert big["mrr"] == str(minor_to_major(mrr.mrr_minor, mrr.currency))
    assert big["renewal_date"] and big["renewal_date"][:4].isdigit()
    assert by_name["Fine Inc"]["stage"] == "Established"


def test_csv_cells_cannot_run_as_formulas(billing_client, world):
    world["small"].name = '=HYPERLINK("http://evil.test","click")'
    world["small"].save(update_fields=["name"])
    CustomerHealthSnapshot.objects.filter(customer=world["big"]).update(explanation="@SUM(A1:A9)")
    body = b"".join(billing_client.get(CSV_URL).streaming_content).decode()
    rows = {row["customer_id"]: row for row in csv.DictReader(io.StringIO(body))}
    assert rows[str(world["small"].pk)]["customer"] == "'" + '=HYPERLINK("http://evil.test","click")'
    assert rows[str(world["big"].pk)]["explanation"] == "'@SUM(A1:A9)"
    assert [csv_safe(v) for v in ("+1", "-1", "a=b", "\tx", None, 7)] == ["'+1", "'-1", "a=b", "'\tx", "", "7"]


def test_page_without_any_scores_says_so(support_client):
    customer_with_subscription(name="Unscored")
    response = support_client.get(URL)
    assert response.status_code == 200
    assert b"no scores yet" in response.content and b"No scores yet." in response.content


def test_the_admin_index_links_the_reports_each_role_may_open(support_client, billing_client):
    support = support_client.get("/admin/").content.decode()
    billing = billing_client.get("/admin/").content.decode()
    assert URL in support and "/admin/reports/metrics/" not in support
    assert URL in billing and "/admin/reports/metrics/" in billing


def _scored_customers(count: int, first: int = 0) -> None:
    """`count` customers with a subscription, a third of them at risk, scores spread over the bands."""
    for i in range(first, first + count):
        customer = customer_with_subscription(name=f"Customer {i:03d}", seats=2 + i % 7)
        snapshot(customer, score=10 + (i * 7) % 90, stage="at_risk" if i % 3 == 0 else "established")


def test_the_page_runs_the_same_queries_for_3_and_30_customers_and_at_most_15(support_client):
    def page_queries() -> tuple[int, object]:
        support_client.get(URL)  # warm the session and permission caches
        with CaptureQueriesContext(connection) as queries:
            response = support_client.get(URL)
        assert response.status_code == 200
        return len(queries), response

    _scored_customers(3)
    few, _ = page_queries()
    _scored_customers(27, first=3)
    many, response = page_queries()
    assert few == many <= 15
    overview = response.context["overview"]
    # Counted by the database, not from every customer's row: 30 scored, the stages and bands add up.
    assert overview.scored == 30 and sum(overview.score_bands) == 30
    assert overview.stage_counts == {"at_risk": 10, "established": 20}
    # At risk: stage at_risk (10) or a score under the threshold (50).
    at_risk_names = {
        f"Customer {i:03d}" for i in range(30) if i % 3 == 0 or 10 + (i * 7) % 90 < WEIGHTS["at_risk_below"]
    }
    assert overview.at_risk_total == len(at_risk_names) == len(overview.at_risk)
    assert {row.name for row in overview.at_risk} == at_risk_names
    mrr = mrr_by_customer(clock.today())
    amounts = [row.mrr_minor for row in overview.at_risk]
    assert amounts == sorted(amounts, reverse=True) and all(amount > 0 for amount in amounts)
    assert sum(amounts) == sum(mrr[row.customer_id].mrr_minor for row in overview.at_risk)
    assert overview.at_risk_mrr == {"USD": sum(amounts)}


def test_the_at_risk_list_shows_the_most_mrr_at_stake_first_and_counts_everyone(support_client, monkeypatch):
    monkeypatch.setattr(backoffice_health, "AT_RISK_SHOWN", 4)
    _scored_customers(9)  # customers 0, 3 and 6 are at risk by stage; those scoring under 50 too
    overview = support_client.get(URL).context["overview"]
    assert len(overview.at_risk) == 4 < overview.at_risk_total
    shown = [row.mrr_minor for row in overview.at_risk]
    assert min(shown) >= max(  # nobody left out has more at stake than a row shown
        row.mrr_minor
        for row in backoffice_health.health_rows()
        if row.at_risk and row.name not in {r.name for r in overview.at_risk}
    )


def test_the_page_counts_each_customers_newest_snapshot_only_and_a_same_instant_tie_goes_to_the_later_one():
    older, tied = customer_with_subscription(), customer_with_subscription()
    unscored = customer_with_subscription()
    CustomerHealthSnapshot.objects.create(
        customer=older, computed_at=clock.now() - timedelta(days=1), score=10, stage="at_risk"
    )
    snapshot(older, score=90, stage="established")
    snapshot(tied, score=20, stage="at_risk")
    last = snapshot(tied, score=70, stage="adopting")
    newest = {s.customer_id: s for s in backoffice_health.newest_snapshots()}
    assert set(newest) == {older.pk, tied.pk} and unscored.pk not in newest
    assert newest[older.pk].score == 90 and newest[tied.pk].pk == last.pk
    assert backoffice_health.health_overview().stage_counts == {"established": 1, "adopting": 1}
