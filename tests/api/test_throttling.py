"""Anonymous throttles key on the real client address: a forged X-Forwarded-For never buys a fresh bucket."""

import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture
def anon_rate(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"api": "600/minute", "anon": "2/minute"},
    }


def test_anonymous_throttle_ignores_a_client_written_forwarded_for(client, anon_rate):
    for n in range(2):
        assert client.get("/api/v1/packages/", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code == 200

    response = client.get("/api/v1/packages/", HTTP_X_FORWARDED_FOR="203.0.113.99")

    assert_error(response, 429, "throttled")


def test_behind_one_proxy_the_address_it_appended_is_the_client(client, anon_rate, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # the client forges a first entry; our proxy appends the address it really saw
    for forged in ("10.0.0.1", "10.0.0.2"):
        assert client.get("/api/v1/packages/", HTTP_X_FORWARDED_FOR=f"{forged}, 198.51.100.7").status_code == 200

    assert_error(client.get("/api/v1/packages/", HTTP_X_FORWARDED_FOR="10.0.0.3, 198.51.100.7"), 429, "throttled")
    assert client.get("/api/v1/packages/", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 200  # someone else
