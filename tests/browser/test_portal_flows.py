"""The portal in a real Chromium (Playwright) against live_server: the flows customers actually click through.

Each flow saves a screenshot of the page it ends on (the `screenshot` fixture, tests/support/plugin.py): under
var/screenshots/ normally, into docs/screenshots/ (shown in the README) with `make screenshots`.
"""

from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command
from playwright.sync_api import expect

from portal.models import EffortSurveyResponse
from subscriptions.models import Customer, Entitlement, Subscription
from subscriptions.tasks import entitlements_reconcile_task
from tests.clock import in_years
from tests.portal.conftest import make_account, make_invoice

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "continuum-demo"


@pytest.fixture(autouse=True)
def _fresh_throttle():
    cache.clear()


@pytest.fixture(autouse=True)
def _no_csp_violations(page):
    """Our pages work under the strict Content-Security-Policy: the browser reports no blocked script or style."""
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    yield
    assert blocked == []


def sign_in(page, live_server, email: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/c/**")


def test_sign_up_from_pricing_ends_on_the_dashboard_with_enablement(live_server, page, screenshot):
    call_command("seed_demo", verbosity=0)  # the real demo catalog: Starter, Team, Business
    page.goto(f"{live_server.url}/pricing/")
    saving = page.get_by_text("Save $398.00 a year (17%) compared with monthly")  # Team: 12 × 199 vs 1,990
    assert saving.is_hidden()  # the monthly view comes first
    page.get_by_label("Annual").check()  # the toggle works without a reload
    saving.wait_for()
    screenshot(page, "pricing")
    page.get_by_role("link", name="Choose Team").click()
    page.fill("#f-seats", "6")
    page.fill("#f-name", "Gavin Belson")
    page.fill("#f-email", "gavin@hooli.test")
    page.fill("#f-password", "a-very-long-passphrase")
    page.fill("#f-company_name", "Hooli")
    page.select_option("#f-country", "US")
    page.fill("#f-region", "NY")
    page.fill("#f-address_line1", "1 Hooli Way")
    page.fill("#f-city", "New York")
    page.fill("#f-postal_code", "10001")
    screenshot(page, "signup")
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url(f"{live_server.url}/c/**")
    expect(page.get_by_text("Welcome to Continuum, Hooli")).to_be_visible()
    expect(page.get_by_text("days left in your trial")).to_be_visible()
    page.locator("#enablement").wait_for()
    assert Subscription.objects.get(customer__name="Hooli").seats == 6
    # The dashboard asks how easy signing up was; one click answers it and it is not asked again.
    survey = page.get_by_role("region", name="How easy was that?")
    expect(survey.get_by_text("Signing up for Continuum")).to_be_visible()
    screenshot(page, "signup-survey")
    survey.get_by_label("7").check()
    survey.get_by_role("button", name="Send").click()
    page.get_by_text("Thank you").wait_for()
    assert page.get_by_role("region", name="How easy was that?").count() == 0
    assert EffortSurveyResponse.objects.get().change_kind == "signup"


@pytest.fixture
def demo(db):
    """The demo data exactly as `make run` loads it (seed_demo brings every subscription up to today)."""
    call_command("seed_demo", verbosity=0)


def test_change_seats_with_live_preview_and_confirm(live_server, page, demo, screenshot):
    sign_in(page, live_server, "owner@acme.test")
    screenshot(page, "dashboard")
    page.get_by_role("link", name="Seats").first.click()
    page.fill("#seat-count", "12")  # htmx previews while typing
    page.get_by_text("Total due now").wait_for()
    expect(page.get_by_text("$304.00 per month")).to_be_visible()  # 199.00 + 7 extra seats × 15.00
    screenshot(page, "seats-preview")
    page.get_by_role("button", name="Confirm seats").click()
    page.get_by_role("heading", name="How easy was that?").wait_for()
    page.get_by_label("6").check()
    page.get_by_role("button", name="Send").click()
    page.get_by_text("Thank you").wait_for()
    assert Subscription.objects.get(customer__name="Acme Inc").seats == 12
    expect(page.get_by_text("of 12 in use")).to_be_visible()


def test_package_page_previews_an_upgrade(live_server, page, demo, screenshot):
    sign_in(page, live_server, "owner@acme.test")
    page.get_by_role("link", name="Package").first.click()
    page.get_by_role("button", name="Preview Business").click()
    page.get_by_text("Total due now").wait_for()
    screenshot(page, "package-preview")


def test_enablement_panel_turns_active_while_watching(live_server, page):
    # given a customer whose seats and features are not confirmed by the backend yet (set-based, as a reconcile
    # that has sent them leaves them), watching the dashboard
    account = make_account()
    entitlements_reconcile_task.apply(args=[account.customer.pk])
    Entitlement.objects.filter(customer=account.customer).update(state="pending")
    sign_in(page, live_server, account.member.email)
    expect(page.get_by_text("Setting things up")).to_be_visible()
    # when the provisioning task runs, as a worker runs it, while the page stays open
    entitlements_reconcile_task.apply(args=[account.customer.pk])
    # then the polled panel turns active without a reload (the cached page follows the database), and stops polling
    page.get_by_text("Everything is active.").wait_for(timeout=15_000)
    assert page.locator("#enablement[hx-trigger]").count() == 0  # polling stopped


def test_submit_a_tax_certificate(live_server, page, tmp_path, demo, screenshot):
    certificate = tmp_path / "exemption.pdf"
    certificate.write_bytes(b"%PDF-1.4\n% exemption certificate\n")
    sign_in(page, live_server, "ap@acme.test")
    page.get_by_role("link", name="Tax exemption").click()
    page.fill("#f-jurisdictions", "US-CA")
    page.select_option("#f-exemption_type", "nonprofit")
    page.fill("#f-certificate_number", "CA-501-77")
    page.fill("#f-expires_on", in_years(3).isoformat())
    page.set_input_files("#f-certificate", str(certificate))
    page.get_by_role("button", name="Send for review").click()
    page.get_by_text("Certificate received").wait_for()
    expect(page.get_by_text("Submitted, awaiting review")).to_be_visible()
    screenshot(page, "tax-exemption")


def test_download_an_invoice_pdf(live_server, page, screenshot):
    account = make_account()
    invoice = make_invoice(account.customer, total=123_450, pdf=b"%PDF-1.4 invoice")
    sign_in(page, live_server, account.billing_admin.email)
    page.get_by_role("link", name="Invoices").click()
    expect(page.get_by_text("$1,234.50").first).to_be_visible()
    screenshot(page, "invoices")
    with page.expect_download() as download_info:
        page.get_by_role("link", name=f"PDF of {invoice.number}").click()
    download = download_info.value
    assert download.suggested_filename == f"{invoice.number}.pdf"
    assert Path(download.path()).read_bytes().startswith(b"%PDF")


def test_a_member_is_denied_billing_pages(live_server, page, demo, screenshot):
    sign_in(page, live_server, "dev@acme.test")
    customer_id = Customer.objects.get(name="Acme Inc").pk
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Invoices").count() == 0
    assert nav.get_by_role("link", name="Billing details").count() == 0
    response = page.goto(f"{live_server.url}/c/{customer_id}/invoices/")
    assert response.status == 403
    expect(page.get_by_role("heading", name="This page is for other roles")).to_be_visible()
    screenshot(page, "member-denied")


def test_dashboard_fits_a_phone(live_server, page, demo, screenshot):
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, live_server, "owner@acme.test")
    # Nothing wider than the screen: no horizontal scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "dashboard-phone")
