"""/healthz reports database and broker reachability as JSON, 200 when both answer and 503 when one does not."""

import pytest
from django.urls import reverse
from kombu import Connection
from kombu.transport.sqlalchemy import Channel as SqlaChannel

from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def test_healthz_reports_ok_when_database_and_broker_answer(client):
    response = client.get(reverse("healthz"))

    assert response.status_code == 200
    assert response.json() == {"database": "ok", "broker": "ok", "status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz_reports_503_and_why_when_the_broker_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    response = client.get(reverse("healthz"))

    body = response.json()
    assert response.status_code == 503
    assert (body["database"], body["status"]) == ("ok", "degraded")
    assert body["broker"].startswith("error: ")
    assert "Connection refused" in body["broker"]
    assert "hunter2" not in response.text


def test_healthz_reports_503_when_the_embedded_broker_file_cannot_be_opened(client, settings, tmp_path):
    settings.CELERY_BROKER_URL = f"sqla+sqlite:///{tmp_path}/missing-dir/broker.sqlite"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}

    response = client.get(reverse("healthz"))

    assert response.status_code == 503
    assert response.json()["broker"].startswith("error: OperationalError")


def test_healthz_stays_ok_when_another_process_declares_the_embedded_brokers_queue_at_the_same_moment(
    client, settings, tmp_path, monkeypatch
):
    # Two gunicorn workers (or a worker and the web process) starting together both declare the default queue on a
    # fresh embedded broker; kombu serialises its look-up-then-insert within a process only, so one of them loses.
    settings.CELERY_BROKER_URL = f"sqla+sqlite:///{tmp_path}/broker.sqlite"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    with Connection(settings.CELERY_BROKER_URL) as other_process:  # the other process wins the insert
        other_process.default_channel.queue_declare(queue=settings.CELERY_TASK_DEFAULT_QUEUE)
    original = SqlaChannel._get_or_create
    declarations = []

    def lost_the_race_once(channel, queue):
        declarations.append(queue)
        if len(declarations) == 1:  # this process's look-up ran before the other's insert, so it inserts too
            channel.session.add(channel.queue_cls(queue))
            channel.session.commit()
        return original(channel, queue)

    monkeypatch.setattr(SqlaChannel, "_get_or_create", lost_the_race_once)

    response = client.get(reverse("healthz"))

    assert response.status_code == 200, response.json()
    assert response.json()["broker"] == "ok"
    assert len(declarations) > 1  # the lost race happened, and a later declaration found the queue


def test_healthz_refuses_other_methods(client):
    assert client.post(reverse("healthz")).status_code == 405
