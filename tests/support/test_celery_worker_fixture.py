"""The celery_worker_process fixture runs a real worker on the test database, and survives being SIGKILLed."""

import pytest
from django.contrib.auth.models import Group

from tests.support.processes import wait_until
from tests.support.tasks import record_marker, wait_for_file_then_record

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_celery_worker_process_runs_a_task_against_the_test_database(celery_worker_process):
    # when
    record_marker.delay("sent-through-the-broker")

    # then: the row was written by the worker process, in the database this test reads
    wait_until(
        lambda: Group.objects.filter(name="sent-through-the-broker").exists(),
        timeout=30,
        what="the worker to run harness.record_marker",
    )


def test_celery_worker_process_killed_mid_task_gets_the_task_redelivered(celery_worker_process, tmp_path):
    # given: a task that is running on the worker and has not finished
    release = tmp_path / "release"
    wait_for_file_then_record.delay("survived-a-kill", str(release))
    celery_worker_process.wait_for_log("harness task survived-a-kill started")

    # when: the worker dies without acknowledging it
    if celery_worker_process.redelivers_after_kill:
        celery_worker_process.kill()  # the whole worker, as if the machine died
        release.touch()
        celery_worker_process.restart()
    else:
        celery_worker_process.kill(whole_group=False)  # the pool process; the parent requeues the task
        release.touch()

    # then: the task runs again to completion
    wait_until(
        lambda: Group.objects.filter(name="survived-a-kill").exists(),
        timeout=30,
        what="the killed worker's task to be redelivered and finish",
    )
    assert Group.objects.filter(name="survived-a-kill").count() == 1
