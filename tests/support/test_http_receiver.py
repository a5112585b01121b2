"""The HTTP receiver records real requests, checks HMAC signatures and fails on demand."""

import hashlib
import hmac
import json
import urllib.error
import urllib.request

import pytest

from tests.support.http_receiver import HttpReceiver, hmac_sha256_check


def post(url: str, payload: dict, headers: dict | None = None) -> int:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def sign(secret: str, payload: dict) -> str:
    return "sha256=" + hmac.new(secret.encode(), json.dumps(payload).encode(), hashlib.sha256).hexdigest()


def test_http_receiver_records_method_path_headers_and_body(http_receiver):
    status = post(http_receiver.url("/hooks/seats"), {"seats": 12}, {"X-Request-ID": "abc"})

    [request] = http_receiver.wait_for_requests(1)
    assert status == 200
    assert (request.method, request.path, request.status) == ("POST", "/hooks/seats", 200)
    assert request.header("x-request-id") == "abc"
    assert request.json() == {"seats": 12}


def test_http_receiver_fails_the_next_n_requests_then_succeeds(http_receiver):
    http_receiver.fail_next(2)

    statuses = [post(http_receiver.url("/hook"), {"attempt": n}) for n in range(3)]

    assert statuses == [503, 503, 200]
    assert [r.status for r in http_receiver.requests] == [503, 503, 200]


def test_http_receiver_rejects_a_bad_signature_with_401():
    payload = {"event": "seats.changed"}
    with HttpReceiver(signature_check=hmac_sha256_check(secret="right")) as receiver:
        good = post(receiver.url("/hook"), payload, {"X-Continuum-Signature": sign("right", payload)})
        bad = post(receiver.url("/hook"), payload, {"X-Continuum-Signature": sign("wrong", payload)})
        missing = post(receiver.url("/hook"), payload)

    assert (good, bad, missing) == (200, 401, 401)
    assert [r.signature_valid for r in receiver.requests] == [True, False, False]


def test_http_receiver_wait_for_requests_says_what_arrived_when_it_times_out(http_receiver):
    post(http_receiver.url("/only-one"), {})

    with pytest.raises(TimeoutError, match="got 1.*only-one"):
        http_receiver.wait_for_requests(2, timeout=0.2)
