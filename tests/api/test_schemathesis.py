"""Property-based run of every documented operation against the generated schema, in-process (WSGI).

No 500s; every status, header and body as documented. A small, bounded number of examples per operation keeps
this well under a minute. Calls authenticate as an admin API key of a customer with a live subscription, and the
customer and subscription ids are pinned so requests reach the views rather than stopping at the 404 that every
foreign id gets (cross-customer 404s are tested one by one elsewhere).
"""

import os
from pathlib import Path

import pytest
import schemathesis
import yaml
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, assume, given, settings

from portal.services.api_keys import api_key_create
from subscriptions.services.subscriptions import subscription_create
from tests.api.conftest import make_account
from tests.factories import priced_package

# Operations are listed from the committed schema (test_schema.py keeps it equal to the generated one); each test
# then loads the live generated schema from the app.
_COMMITTED = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in _COMMITTED["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
]
# A few derandomized examples per operation in every run; hunt harder locally with e.g.
# SCHEMATHESIS_MAX_EXAMPLES=300 SCHEMATHESIS_RANDOM=1 pytest tests/api/test_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "5"))
DERANDOMIZE = os.environ.get("SCHEMATHESIS_RANDOM") != "1"
# Schema-valid input may still be refused by a business rule (422, e.g. "you already have 12 seats"); a 400 for
# schema-valid input would mean the schema lies, and stays a failure.
CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429"],
            }
        }
    }
)


@pytest.fixture(autouse=True)
def keep_the_test_connection_open():
    # Calling the WSGI app directly fires request_started/request_finished, whose close_old_connections() closes the
    # test's connection (autocommit is off inside the test transaction): harmless on in-memory SQLite, fatal on
    # PostgreSQL ("the connection is closed"). Django's test Client disconnects it the same way.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(db):
    account = make_account("Schemathesis")
    package = priced_package(slug="team", name="Team")
    subscription = subscription_create(customer=account.customer, package=package, interval="month", seats=3)
    _, secret = api_key_create(customer=account.customer, name="fuzz", role="admin", actor=account.owner)
    return {"customer_id": account.customer.pk, "subscription_id": subscription.pk, "secret": secret}


def _has_lone_surrogates(value) -> bool:
    """Hypothesis may put surrogate code points in generated text. No client can send them: UTF-8 cannot encode
    them, and JSON's escaped pairs decode to one astral character, which changes the length the schema saw."""
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogates(k) or _has_lone_surrogates(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_lone_surrogates(item) for item in value)
    return False


@pytest.mark.parametrize("label", OPERATIONS)
def test_api_operation_conforms_to_schema(label, world):
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application(), config=CONFIG)
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is in docs/openapi.yaml but not in the generated schema"

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES, deadline=None, derandomize=DERANDOMIZE, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        assume(not any(_has_lone_surrogates(part) for part in (case.body, case.query, case.path_parameters)))
        for name in ("customer_id", "subscription_id"):
            if case.path_parameters and name in case.path_parameters:
                case.path_parameters[name] = world[name]
        auth = {"Authorization": f"Bearer {world['secret']}"}
        response = case.call(headers=auth)
        assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:500]}"
        case.validate_response(response, headers=auth)

    check()
