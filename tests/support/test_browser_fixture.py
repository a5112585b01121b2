"""The Playwright fixtures drive Debian's Chromium against pytest-django's live_server."""

import pytest

from subscriptions.models import User

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_browser_signs_in_through_the_login_page(live_server, page):
    User.objects.create_user("someone@example.test", "s3cret-passw0rd")

    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "someone@example.test")
    page.fill("#id_password", "s3cret-passw0rd")
    page.click("button[type=submit]")

    page.wait_for_url(f"{live_server.url}/dashboard/")
    assert page.locator("h1").first.is_visible()


def test_browser_reads_healthz_from_the_live_server(live_server, page):
    response = page.goto(f"{live_server.url}/healthz")

    assert response.status == 200
    assert response.json()["status"] == "ok"
