"""The OpenAPI schema: committed in docs/openapi.yaml and kept equal to what the code generates."""

from pathlib import Path

import yaml
from django.conf import settings
from django.core.management import call_command

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"


def test_openapi_schema_matches_committed_copy(tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated), "--validate", "--fail-on-warn")
    assert COMMITTED.exists(), "docs/openapi.yaml is missing: run `make openapi` and commit it."
    assert generated.read_text() == COMMITTED.read_text(), (
        "The API schema changed but docs/openapi.yaml was not updated: run `make openapi` "
        "(manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml) and commit the result."
    )


def test_openapi_schema_served_at_api_v1_schema(client, db):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"openapi: 3" in response.content
    assert b"/api/v1/packages/" in response.content


def test_api_docs_page_served_offline_under_csp(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp
    assert "<script>" not in html  # no inline script: the init script is a same-origin file
    assert "cdn" not in html.lower() and "https://" not in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"/api/v1/schema/" in script.content


def test_every_operation_documents_the_json_500_and_503(tmp_path):
    # An integrator's generated client must know that any call can answer 500 (a bug: quote request_id) or 503
    # (briefly busy: safe to retry), always in the API's JSON error body.
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated))
    schema = yaml.safe_load(generated.read_text())
    operations = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert len(operations) > 20
    for path, method, operation in operations:
        for status in ("500", "503"):
            response = operation["responses"].get(status)
            assert response, f"{method.upper()} {path} does not document {status}"
            assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "request_id" in schema["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
