"""The staff report pages in a real Chromium: customer health and revenue metrics draw their SVG charts under the
strict CSP, for billing staff signed in to the back office, on the demo data (seed_demo: three months of billing
history, then the nightly health and revenue tasks' work done once). Saves the `staff-metrics` screenshot the README
shows (`make screenshots`)."""

import importlib

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.core.management import call_command
from playwright.sync_api import expect

from billing.services.revenue_metrics import month_add, month_first, revenue_months_update
from portal.services.health import customer_health_recompute
from subscriptions import clock

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _report_grants() -> None:
    """The report permissions come from a data migration (portal 0011); an earlier transactional test's flush empties
    the groups, so grant them again from the migration's own table (the same rows a fresh database has)."""
    grants = importlib.import_module("portal.migrations.0011_health_and_revenue_metrics_groups").GRANTS
    for group_name, group_grants in grants.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for app_label, model, action in group_grants:
            group.permissions.add(
                Permission.objects.get(
                    content_type__app_label=app_label, content_type__model=model, codename=f"{action}_{model}"
                )
            )


PASSWORD = "continuum-demo"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


@pytest.fixture(autouse=True)
def _no_csp_violations(page):
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    yield
    assert blocked == []


def test_billing_staff_see_health_and_revenue_charts(live_server, page, screenshot):
    _report_grants()
    call_command("seed_demo", verbosity=0)
    this_month = month_first(clock.today())
    for back in range(4, -1, -1):  # the demo's history months, oldest first, as the nightly task would have
        revenue_months_update(month_add(this_month, -back))
    customer_health_recompute()

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "billing@continuum.test")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    page.get_by_role("link", name="Customer health").click()
    expect(page.get_by_role("heading", name="Customer health")).to_be_visible()
    histogram = page.get_by_role("img", name="Health score distribution")
    expect(histogram).to_be_visible()
    assert histogram.locator("rect.bar").count() >= 1  # at least one band has customers
    expect(page.get_by_role("button", name="Preview")).to_be_visible()
    assert page.get_by_role("button", name="Save weights").count() == 0  # billing staff may preview, not save

    page.get_by_role("link", name="Revenue metrics").first.click()
    expect(page.get_by_role("heading", name="Revenue metrics")).to_be_visible()
    movements = page.get_by_role("img", name="MRR movements by month (USD)")
    expect(movements).to_be_visible()
    assert movements.locator("rect.bar").count() >= 1
    box = movements.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100  # drawn at size, not collapsed
    expect(page.get_by_role("img", name="MRR at each month's end (USD)")).to_be_visible()
    expect(page.locator("#metric-mrr")).not_to_have_text("—")
    expect(page.locator("#ltv-assumptions li").first).to_be_visible()
    screenshot(page, "staff-metrics")
