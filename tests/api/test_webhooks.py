"""Webhook endpoints over the API: owners only, secret answered once, coded refusals, test event, log and resend."""

import pytest

from subscriptions.models import WebhookDelivery, WebhookEndpoint
from tests.api.conftest import as_user, assert_error, caller
from tests.support.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db


def _url(account, suffix=""):
    return f"/api/v1/customers/{account.customer.pk}/webhook-endpoints/{suffix}"


def test_webhook_endpoint_create_answers_the_secret_once(acme, http_receiver):
    client = as_user(acme.owner)
    response = client.post(
        _url(acme), {"url": http_receiver.url("/in"), "event_types": ["invoice.paid", "member.added"]}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    assert body["event_types"] == ["invoice.paid", "member.added"] and body["enabled"] is True
    # afterwards: only its start
    listed = client.get(_url(acme)).json()["results"]
    assert [e["id"] for e in listed] == [endpoint.pk] and "secret" not in listed[0]
    assert listed[0]["secret_hint"] == endpoint.secret[:10] + "…"
    assert "secret" not in client.get(_url(acme, f"{endpoint.pk}/")).json()


@pytest.mark.parametrize("who", ["billing_admin", "member", "key:billing", "key:read_only"])
def test_webhook_endpoints_refused_to_other_roles(acme, who):
    client = caller(acme, who)
    assert_error(client.get(_url(acme)), 403, "permission_denied")
    response = client.post(_url(acme), {"url": "https://example.com", "event_types": ["*"]}, format="json")
    assert_error(response, 403, "permission_denied")
    assert not WebhookEndpoint.objects.exists()


def test_webhook_endpoints_of_another_customer_are_404(acme, globex, http_receiver):
    created = as_user(globex.owner).post(
        _url(globex), {"url": http_receiver.url("/"), "event_types": ["*"]}, format="json"
    )
    endpoint_id = created.json()["id"]
    client = as_user(acme.owner)
    assert_error(client.get(_url(globex)), 404, "not_found")
    for path in (f"{endpoint_id}/", f"{endpoint_id}/test/", f"{endpoint_id}/rotate-secret/"):
        method = client.get if path.endswith(f"{endpoint_id}/") else client.post
        assert_error(method(_url(acme, path)), 404, "not_found")
    assert_error(client.delete(_url(acme, f"{endpoint_id}/")), 404, "not_found")
    assert WebhookEndpoint.objects.filter(pk=endpoint_id).exists()


@pytest.mark.parametrize(
    ("payload", "code", "field"),
    [
        ({"url": "http://example.com/hook", "event_types": ["*"]}, "url_not_https", "url"),
        ({"url": "https://10.0.0.8/hook", "event_types": ["*"]}, "url_private_address", "url"),
        ({"url": "https://169.254.169.254/", "event_types": ["*"]}, "url_private_address", "url"),
        ({"url": "https://a:b@example.com/", "event_types": ["*"]}, "url_credentials", "url"),
        ({"url": "https://hooks.invalid/", "event_types": ["*"]}, "url_unresolvable", "url"),
        ({"url": "https://example.com/", "event_types": []}, "min_length", "event_types"),
        ({"url": "https://example.com/", "event_types": ["invoice.eaten"]}, "invalid_choice", "event_types.0"),
        ({"url": "https://example.com/", "event_types": ["*"], "secret": "mine"}, "unknown_field", "secret"),
    ],
)
def test_webhook_endpoint_create_refuses_bad_input_with_codes(acme, payload, code, field, settings):
    settings.WEBHOOKS_ALLOW_LOOPBACK_HTTP = False
    response = as_user(acme.owner).post(_url(acme), payload, format="json")
    error = assert_error(response, 400 if field != "url" else 422, code)
    assert error["field"] == field
    assert not WebhookEndpoint.objects.exists()


def test_webhook_endpoint_test_rotate_log_and_resend(acme, django_capture_on_commit_callbacks):
    client = as_user(acme.owner)
    with HttpReceiver() as receiver:
        endpoint_id = client.post(_url(acme), {"url": receiver.url("/in"), "event_types": ["*"]}, format="json").json()[
            "id"
        ]
        # when: a test event
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(_url(acme, f"{endpoint_id}/test/"))
        assert response.status_code == 202
        [request] = receiver.wait_for_requests(1)
        assert request.json()["type"] == "webhook_endpoint.test"
        # then: the log shows it with its attempt
        [delivery] = client.get(_url(acme, f"{endpoint_id}/deliveries/")).json()["results"]
        assert delivery["status"] == "succeeded" and delivery["kind"] == "test"
        assert delivery["attempt_log"][0]["status_code"] == 200
        assert delivery["attempt_log"][0]["response_excerpt"] == '{"ok": true}'
        # resend
        with django_capture_on_commit_callbacks(execute=True):
            resent = client.post(_url(acme, f"{endpoint_id}/deliveries/{delivery['id']}/resend/"))
        assert resent.status_code == 202
        assert len(receiver.wait_for_requests(2)) == 2
    # rotate: a new secret, answered once, the old one overlapping
    old = WebhookEndpoint.objects.get(pk=endpoint_id).secret
    rotated = client.post(_url(acme, f"{endpoint_id}/rotate-secret/"), {"overlap_hours": 2}, format="json").json()
    assert rotated["secret"] != old and rotated["previous_secret_expires_at"]
    assert_error(client.post(_url(acme, f"{endpoint_id}/rotate-secret/"), {"overlap_hours": 500}, format="json"), 400)
    # disable, then delete
    assert client.patch(_url(acme, f"{endpoint_id}/"), {"enabled": False}, format="json").json()["enabled"] is False
    assert client.delete(_url(acme, f"{endpoint_id}/")).status_code == 204
    assert not WebhookDelivery.objects.exists()


def test_webhook_deliveries_list_queries_do_not_grow(acme, django_assert_max_num_queries, http_receiver):
    from subscriptions.services.webhooks import webhook_endpoint_send_test

    client = as_user(acme.owner)
    endpoint_id = client.post(_url(acme), {"url": http_receiver.url("/"), "event_types": ["*"]}, format="json").json()[
        "id"
    ]
    for _ in range(5):
        webhook_endpoint_send_test(endpoint_id=endpoint_id, actor=acme.owner)
    with django_assert_max_num_queries(12):
        assert client.get(_url(acme, f"{endpoint_id}/deliveries/")).json()["count"] == 5
