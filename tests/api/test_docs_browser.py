"""/api/docs/ in a real Chromium (Playwright) against live_server (issue 9): Swagger UI is served from our own static
files (drf-spectacular-sidecar) under the page's Content-Security-Policy — no CDN, nothing blocked — and it lists the
API's operations from /api/v1/schema/."""

from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

_SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
OPERATIONS = sum(
    1 for item in _SCHEMA["paths"].values() for method in item if method in {"get", "post", "patch", "put", "delete"}
)


def test_api_docs_render_every_tag_and_operation_from_our_own_origin(live_server, page):
    # given: a browser that records every request it makes and every CSP complaint
    origin = urlsplit(live_server.url).netloc
    requested, blocked, errors = [], [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: errors.append(str(error)))

    # when: the docs page is opened
    response = page.goto(f"{live_server.url}/api/docs/")

    # then: it is served with a strict CSP (scripts only from us), and Swagger UI renders the operations
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    page.locator(".swagger-ui .info .title").filter(has_text="Continuum API").wait_for()
    operations = page.locator(".opblock")
    operations.first.wait_for()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/packages/" in p for p in paths)
    assert any("/api/v1/customers/{customer_id}/tax-exemptions/" in p for p in paths)
    assert operations.count() == OPERATIONS  # every documented operation (test_schema.py keeps the file current)

    # and: an operation opens and shows its responses, all without leaving our origin or tripping the CSP
    page.locator(".opblock-summary-path", has_text="/api/v1/packages/").first.click()
    page.locator(".opblock.is-open .responses-wrapper").wait_for()
    assert blocked == [] and errors == []
    assert [url for url in requested if urlsplit(url).netloc not in (origin, "")] == []
    assert any(url.endswith("/api/v1/schema/") or "/api/v1/schema/?" in url for url in requested)
    assert any("swagger-ui" in url and url.endswith(".js") for url in requested)
