"""The production profile's settings (issue 17, docs/deploy.md): no dev fallbacks, `check --deploy` clean, queues."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.files.storage import InMemoryStorage
from django.test import override_settings

from billing.storage import PrivateStorage, private_storage
from portal.celery import app

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "DJANGO_ENV": "production",
    "DJANGO_SETTINGS_MODULE": "portal.settings",
    "SECRET_KEY": "a-long-random-production-secret-key-for-the-test-only-0123456789-abcdefghijkl",
    "ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "postgres://continuum:continuum@127.0.0.1:5432/continuum_never_connected",
    "CACHE_URL": "redis://127.0.0.1:6379/15",
}


def _manage(*args: str, **overrides: str | None) -> subprocess.CompletedProcess:
    # Not the test harness's own switches either: the browser fixture sets DJANGO_ALLOW_ASYNC_UNSAFE for the session.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION_ENV and not k.startswith("CELERY_") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(PRODUCTION_ENV)
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("missing", ["DATABASE_URL", "CACHE_URL"])
def test_production_refuses_to_start_on_a_development_fallback(missing):
    result = _manage("check", **{missing: None})
    assert result.returncode != 0
    assert f"{missing} must be set when DJANGO_ENV=production" in result.stderr


def test_production_refuses_a_per_process_cache():
    result = _manage("check", CACHE_URL="locmem://")
    assert result.returncode != 0
    assert "CACHE_URL must be a redis://" in result.stderr


def test_check_deploy_is_clean_in_the_production_profile():
    result = _manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("subscriptions.entitlements_reconcile", "provisioning"),
        ("subscriptions.entitlements_drift_check", "provisioning"),
        ("billing.billing_run", "billing"),
        ("billing.finalize_drafts_chunk", "billing"),
        ("billing.dunning_run", "billing"),
        ("billing.invoice_after_issue", "documents"),
        ("billing.invoices_after_issue_fan_out", "documents"),
        ("billing.invoice_render_pdf", "documents"),
        ("billing.credit_note_render_pdf", "documents"),
        ("billing.stripe_event_process", "default"),
    ],
)
def test_tasks_are_routed_to_the_queue_of_their_kind_of_work(task, queue):
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_every_task_of_ours_has_a_queue_a_worker_consumes():
    app.loader.import_default_modules()
    consumed = set(app.amqp.queues)
    assert {"provisioning", "billing", "documents", "default"} <= consumed
    ours = [name for name in app.tasks if name.startswith(("billing.", "subscriptions."))]
    assert ours
    for name in ours:
        assert app.amqp.router.route({}, name)["queue"].name in consumed, name


def test_private_files_use_the_configured_storage():
    assert isinstance(private_storage(), PrivateStorage)
    with override_settings(
        STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
            "private": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
        }
    ):
        assert isinstance(private_storage(), InMemoryStorage)


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile.prod").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_the_production_topology_consumes_every_queue_and_runs_one_beat_on_the_database_scheduler():
    processes = _procfile()
    consumed = set()
    for name, command in processes.items():
        if " worker " in command:
            consumed |= set(command.split(" -Q ", 1)[1].split()[0].split(","))
            assert "--prefetch-multiplier 1" in command, name
    assert consumed == set(app.amqp.queues)
    # enablement never shares a worker with billing runs or PDF renders
    assert not any("provisioning" in c and ("billing" in c or "documents" in c) for c in processes.values())
    beats = [command for command in processes.values() if " beat" in command]
    assert len(beats) == 1 and "django_celery_beat.schedulers:DatabaseScheduler" in beats[0]
    assert "gunicorn" in processes["web"] and "migrate" in processes["release"]
