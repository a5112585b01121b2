"""Back office: accounting exports for billing staff only (run, progress, download, audited); webhook endpoints and
the delivery log for support agents (secret shown once, coded URL refusals, resend)."""

from datetime import timedelta

import pytest
from django.utils import timezone

import subscriptions.tasks  # noqa: F401 - registers the delivery task a test event enqueues (a worker autodiscovers it)
from billing.models import AccountingExport, ExportStatus
from subscriptions.models import AuditEvent, DeliveryKind, WebhookDelivery, WebhookEndpoint
from tests.support.http_receiver import HttpReceiver

pytestmark = pytest.mark.django_db

EXPORTS = "/admin/billing/accountingexport/"


@pytest.fixture(autouse=True)
def _private_storage(settings, tmp_path):
    settings.PRIVATE_STORAGE_ROOT = tmp_path / "private"


def test_accounting_export_billing_staff_run_and_download(
    billing_client, billing_user, django_capture_on_commit_callbacks
):
    month_start = timezone.now().date().replace(day=1)
    previous = (month_start - timedelta(days=1)).replace(day=1)
    with django_capture_on_commit_callbacks(execute=True):
        response = billing_client.post(
            EXPORTS + "add/", {"start": previous.isoformat(), "end": month_start.isoformat(), "format": "csv"}
        )
    assert response.status_code == 302
    export = AccountingExport.objects.get()
    assert export.status == ExportStatus.DONE and export.requested_by == billing_user
    listing = billing_client.get(EXPORTS).content.decode()
    assert "Download" in listing and "100%" in listing
    download = billing_client.get(f"{EXPORTS}{export.pk}/download/")
    assert download.status_code == 200 and download["Content-Disposition"].startswith("attachment")
    assert AuditEvent.objects.filter(action="accounting_export.downloaded", actor=billing_user).exists()


def test_accounting_export_refuses_a_bad_range_with_a_form_error(billing_client):
    response = billing_client.post(EXPORTS + "add/", {"start": "2026-11-02", "end": "2026-11-01", "format": "xlsx"})
    assert response.status_code == 200 and "ends after it starts" in response.content.decode()
    assert not AccountingExport.objects.exists()


def test_accounting_export_not_for_support_agents(support_client, billing_user):
    today = timezone.now().date()
    export = AccountingExport.objects.create(
        requested_by=billing_user, start=today - timedelta(days=30), end=today, status=ExportStatus.DONE
    )
    assert support_client.get(EXPORTS).status_code == 403
    assert support_client.post(EXPORTS + "add/", {"start": "2026-11-01", "end": "2026-12-01"}).status_code == 403
    assert support_client.get(f"{EXPORTS}{export.pk}/download/").status_code == 403


def test_webhook_endpoint_admin_create_shows_secret_once_and_refuses_private_urls(
    support_client, settings, django_capture_on_commit_callbacks
):
    settings.WEBHOOKS_ALLOW_LOOPBACK_HTTP = False
    refused = support_client.post(
        "/admin/subscriptions/webhookendpoint/add/",
        {"url": "https://192.168.1.4/in", "event_types": ["*"], "enabled": "on", "description": ""},
    )
    assert refused.status_code == 200 and "url_private_address" in refused.content.decode()
    assert not WebhookEndpoint.objects.exists()
    settings.WEBHOOKS_ALLOW_LOOPBACK_HTTP = True
    with HttpReceiver() as receiver:
        response = support_client.post(
            "/admin/subscriptions/webhookendpoint/add/",
            {"url": receiver.url("/in"), "event_types": ["invoice.paid"], "enabled": "on", "description": "ERP"},
            follow=True,
        )
        endpoint = WebhookEndpoint.objects.get()
        assert endpoint.customer is None and endpoint.event_types == ["invoice.paid"]
        assert endpoint.secret in response.content.decode()
        assert (
            endpoint.secret
            not in support_client.get(f"/admin/subscriptions/webhookendpoint/{endpoint.pk}/change/").content.decode()
        )
        # test event, then resend from the delivery log
        with django_capture_on_commit_callbacks(execute=True):
            support_client.post(
                "/admin/subscriptions/webhookendpoint/",
                {"action": "send_test", "_selected_action": [endpoint.pk]},
            )
        delivery = WebhookDelivery.objects.get()
        with django_capture_on_commit_callbacks(execute=True):
            support_client.post(
                "/admin/subscriptions/webhookdelivery/", {"action": "resend", "_selected_action": [delivery.pk]}
            )
        assert len(receiver.wait_for_requests(2)) == 2
    assert WebhookDelivery.objects.filter(kind=DeliveryKind.TEST).count() == 2
    page = support_client.get(f"/admin/subscriptions/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert "200" in page and "ok" in page
