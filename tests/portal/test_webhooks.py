"""The owners' webhooks pages: register with the secret shown once, coded refusals, log, test, resend, rotate."""

import pytest

from subscriptions.models import WebhookDelivery, WebhookEndpoint
from tests.support.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db


def _page(account, suffix=""):
    return f"/c/{account.customer.pk}/webhooks/{suffix}"


def test_webhooks_page_owner_adds_endpoint_sees_secret_once(account, client_for, http_receiver):
    client = client_for(account.owner)
    response = client.post(_page(account), {"url": http_receiver.url("/in"), "event_types": ["invoice.paid"]})
    assert response.status_code == 201 and "no-store" in response["Cache-Control"]
    endpoint = WebhookEndpoint.objects.get(customer=account.customer)
    assert endpoint.secret in response.content.decode()
    listing = client.get(_page(account)).content.decode()
    assert endpoint.url in listing and endpoint.secret not in listing
    assert endpoint.secret not in client.get(_page(account, f"{endpoint.pk}/")).content.decode()


def test_webhooks_page_refuses_private_url_with_its_code(account, client_for, settings):
    settings.WEBHOOKS_ALLOW_LOOPBACK_HTTP = False
    response = client_for(account.owner).post(_page(account), {"url": "https://10.0.0.1/x", "event_types": ["*"]})
    assert response.status_code == 422
    assert 'data-code="url_private_address"' in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("role", ["billing_admin", "member"])
def test_webhooks_page_only_for_owners(account, client_for, role):
    client = client_for(account.user(role))
    assert client.get(_page(account)).status_code == 403
    client.post(_page(account), {"url": "https://example.com/", "event_types": ["*"]})
    assert not WebhookEndpoint.objects.exists()


def test_webhook_endpoint_page_of_another_customer_is_404(account, other_account, client_for, http_receiver):
    theirs = client_for(other_account.owner).post(
        _page(other_account), {"url": http_receiver.url("/"), "event_types": ["*"]}
    )
    assert theirs.status_code == 201
    endpoint = WebhookEndpoint.objects.get()
    mine = client_for(account.owner)
    assert mine.get(_page(account, f"{endpoint.pk}/")).status_code == 404
    assert mine.post(_page(account, f"{endpoint.pk}/"), {"action": "delete"}).status_code == 404
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()


def test_webhook_endpoint_page_test_log_resend_rotate(account, client_for, django_capture_on_commit_callbacks):
    client = client_for(account.owner)
    with HttpReceiver() as receiver:
        client.post(_page(account), {"url": receiver.url("/in"), "event_types": ["*"]})
        endpoint = WebhookEndpoint.objects.get()
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(_page(account, f"{endpoint.pk}/"), {"action": "test"}).status_code == 302
        delivery = WebhookDelivery.objects.get()
        log = client.get(_page(account, f"{endpoint.pk}/")).content.decode()
        assert "webhook_endpoint.test" in log and "Delivered" in log and "200 in" in log
        with django_capture_on_commit_callbacks(execute=True):
            client.post(_page(account, f"{endpoint.pk}/"), {"action": "resend", "delivery": delivery.pk})
        assert len(receiver.wait_for_requests(2)) == 2
    old = endpoint.secret
    rotated = client.post(_page(account, f"{endpoint.pk}/"), {"action": "rotate"})
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in rotated.content.decode()
    client.post(_page(account, f"{endpoint.pk}/"), {"action": "disable"})
    endpoint.refresh_from_db()
    assert endpoint.enabled is False
