"""/metrics (issue 17): Prometheus text format, behind a token or an allow-list, with the numbers an operator needs."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from billing.models import Invoice, InvoiceStatus, StripeEvent
from billing.tasks import tax_exemptions_daily_task
from subscriptions.services.subscriptions import subscription_create
from tests.api.conftest import as_user, make_account
from tests.factories import priced_package

pytestmark = pytest.mark.django_db


def scrape(client, **headers) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(v for key, v in samples.get(name, {}).items() if wanted <= set(key))


def test_metrics_refuse_strangers_and_wrong_tokens(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1/32"]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200

    settings.METRICS_TOKEN = "metrics-secret-token"
    # with a token configured, the allow-list no longer suffices
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-secret-token").status_code == 200


def test_metrics_scrape_reports_requests_tasks_provisioning_holds_webhooks_and_queues(
    client, settings, django_capture_on_commit_callbacks
):
    settings.METRICS_TOKEN = "metrics-secret-token"
    auth = {"HTTP_AUTHORIZATION": "Bearer metrics-secret-token"}
    before = scrape(client, **auth)
    account = make_account("Acme")

    # given: API traffic, a task run, a subscription whose entitlements get provisioned, a held invoice, a webhook event
    api = as_user(account.owner)
    assert api.get("/api/v1/me/").status_code == 200
    tax_exemptions_daily_task.apply()
    with django_capture_on_commit_callbacks(execute=True):
        subscription_create(
            customer=account.customer, package=priced_package(slug="team", name="Team"), interval="month", seats=3
        )
    invoice = Invoice.objects.filter(customer=account.customer).first() or Invoice.objects.create(
        customer=account.customer, currency="USD"
    )
    Invoice.objects.filter(pk=invoice.pk).update(
        status=InvoiceStatus.HELD,
        hold_reasons=[{"code": "seat_mismatch", "message": "x"}, {"code": "tax_exemption_pending", "message": "y"}],
    )
    StripeEvent.objects.create(stripe_event_id="evt_m1", type="x.y", stripe_created=1, payload={}, status="failed")

    # when
    after = scrape(client, **auth)

    # then: request latency by view
    name = "django_http_requests_latency_seconds_by_view_method_count"
    assert value(after, name, view="api:me", method="GET") >= value(before, name, view="api:me", method="GET") + 1
    # task counts and durations by task
    tasks = "continuum_celery_tasks_total"
    assert value(after, tasks, task="billing.tax_exemptions_daily", outcome="succeeded") == (
        value(before, tasks, task="billing.tax_exemptions_daily", outcome="succeeded") + 1
    )
    duration = "continuum_celery_task_duration_seconds_count"
    assert value(after, duration, task="billing.tax_exemptions_daily") >= 1
    assert value(after, tasks, task="subscriptions.entitlements_reconcile", outcome="succeeded") >= 1
    # provisioning lag (commit → applied) as a histogram
    lag = "continuum_provisioning_lag_seconds_count"
    assert value(after, lag) == value(before, lag) + 1
    assert "continuum_provisioning_lag_seconds_bucket" in after
    # invoices held by reason, webhook events by outcome, queue depth
    assert value(after, "continuum_invoices_held", reason="seat_mismatch") == 1
    assert value(after, "continuum_invoices_held", reason="tax_exemption_pending") == 1
    assert value(after, "continuum_stripe_webhook_events", outcome="failed") == 1
    assert value(after, "continuum_stripe_webhook_events", outcome="processed") == 0


def test_metrics_count_failed_tasks(client, settings, monkeypatch):
    from billing.services import exemptions

    settings.METRICS_TOKEN = "t0ken"
    auth = {"HTTP_AUTHORIZATION": "Bearer t0ken"}
    before = scrape(client, **auth)

    def broken():
        raise ValueError("a bug, not a lock: no retry")

    monkeypatch.setattr(exemptions, "tax_exemptions_expire_due", broken)
    tax_exemptions_daily_task.apply(throw=False)

    after = scrape(client, **auth)
    tasks = "continuum_celery_tasks_total"
    assert value(after, tasks, task="billing.tax_exemptions_daily", outcome="failed") == (
        value(before, tasks, task="billing.tax_exemptions_daily", outcome="failed") + 1
    )
