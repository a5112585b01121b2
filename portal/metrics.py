"""/metrics in Prometheus's text format (docs/operations.md, "Metrics").

What is exposed, and where it comes from:

* request latency by view and method — django-prometheus's middleware
  (`django_http_requests_latency_seconds_by_view_method`, plus its request/response counters);
* Celery task counts by task and outcome, durations and failures — `continuum_celery_tasks_total`,
  `continuum_celery_task_duration_seconds`, recorded by Celery signals in the process that ran the task;
* provisioning lag, from the commit of the change to the entitlements being applied —
  `continuum_provisioning_lag_seconds`, observed when a reconcile run finishes "applied";
* invoices held for review by reason, Stripe webhook events by outcome and the broker's queue depth —
  `continuum_invoices_held`, `continuum_stripe_webhook_events`, `continuum_celery_queue_depth`, read from the
  database and the broker at scrape time, so every web process reports the same truth.

Counters and histograms live in prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, set in
portal/__init__.py), so a scrape of any web process adds up the web processes, the worker's pool children and beat.

Access: a bearer token (METRICS_TOKEN) or, without one, only the addresses in METRICS_ALLOWED_IPS (loopback by
default; nobody in production unless configured). Metrics name no customer, e-mail or secret.

Models are imported inside the collectors ("local import: pre-setup"): portal.celery loads this module before
Django's app registry is ready, so a module-level model import would fail.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from celery import signals
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

TASKS = Counter(
    "continuum_celery_tasks",
    "Celery tasks finished, by task name and outcome (succeeded, failed, retried).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "continuum_celery_task_duration_seconds",
    "Wall time of one Celery task attempt, by task name.",
    ["task"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
PROVISIONING_LAG = Histogram(
    "continuum_provisioning_lag_seconds",
    "From the commit of a subscription change to its entitlements applied by the provisioning backend.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
)

_OUTCOMES = {"SUCCESS": "succeeded", "FAILURE": "failed", "RETRY": "retried"}
_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, task=None, **kwargs) -> None:
    _started[task_id] = time.perf_counter()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, retval=None, state=None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    name = getattr(task, "name", "unknown")
    try:
        if started is not None:
            TASK_DURATION.labels(task=name).observe(time.perf_counter() - started)
        TASKS.labels(task=name, outcome=_OUTCOMES.get(state or "", (state or "unknown").lower())).inc()
        if name == "subscriptions.entitlements_reconcile" and state == "SUCCESS" and isinstance(retval, int):
            _observe_provisioning_lag(run_id=retval)
    except Exception:  # metrics never break the work they measure
        logger.warning("task metrics not recorded for %s", name, exc_info=True)


def _observe_provisioning_lag(*, run_id: int) -> None:
    from subscriptions.models import ProvisioningRun, RunOutcome  # local import: pre-setup, see top

    run = (
        ProvisioningRun.objects.filter(pk=run_id, outcome=RunOutcome.APPLIED).values("queued_at", "finished_at").first()
    )
    if run and run["queued_at"] and run["finished_at"]:
        PROVISIONING_LAG.observe(max(0.0, (run["finished_at"] - run["queued_at"]).total_seconds()))


class StateCollector:
    """Gauges read at scrape time: held invoices by reason, webhook events by outcome, queue depth."""

    def collect(self):
        yield self._invoices_held()
        yield self._webhook_events()
        yield self._queue_depth()

    def _invoices_held(self) -> GaugeMetricFamily:
        from billing.models import Invoice, InvoiceStatus  # local import: pre-setup, see top

        family = GaugeMetricFamily(
            "continuum_invoices_held",
            "Invoices held for review, by hold reason (one invoice may have several).",
            labels=["reason"],
        )
        counts: dict[str, int] = {}
        for reasons in Invoice.objects.filter(status=InvoiceStatus.HELD).values_list("hold_reasons", flat=True):
            codes = {str(reason.get("code", "unknown")) for reason in (reasons or []) if isinstance(reason, dict)}
            for code in codes or {"unknown"}:
                counts[code] = counts.get(code, 0) + 1
        for code, count in sorted(counts.items()):
            family.add_metric([code], count)
        return family

    def _webhook_events(self) -> GaugeMetricFamily:
        from django.db.models import Count

        from billing.models import StripeEvent, StripeEventStatus  # local import: pre-setup, see top

        family = GaugeMetricFamily(
            "continuum_stripe_webhook_events",
            "Stored Stripe webhook events, by processing outcome.",
            labels=["outcome"],
        )
        counts = dict(StripeEvent.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in StripeEventStatus.values:
            family.add_metric([status], counts.get(status, 0))
        return family

    def _queue_depth(self) -> GaugeMetricFamily:
        from portal.celery import app  # local import: portal.celery imports this module

        family = GaugeMetricFamily(
            "continuum_celery_queue_depth", "Messages waiting in each Celery queue of the broker.", labels=["queue"]
        )
        names = sorted(set(app.amqp.queues) | {app.conf.task_default_queue})
        try:
            with app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
                channel = connection.default_channel
                for name in names:
                    declared = channel.queue_declare(queue=name, passive=True)
                    family.add_metric([name], declared.message_count)
        except Exception:  # the broker is down: /healthz says so; the scrape still answers
            logger.warning("metrics: queue depth unavailable", exc_info=True)
        return family


def _allowed(request) -> bool:
    token = getattr(settings, "METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    if token:
        return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for allowed in getattr(settings, "METRICS_ALLOWED_IPS", []):
        try:
            if address in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False


@never_cache
@require_GET
def metrics_view(request):
    if not _allowed(request):
        return JsonResponse(
            {"error": {"code": "permission_denied", "message": "Metrics need the bearer token.", "field": None}},
            status=403,
        )
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(StateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
