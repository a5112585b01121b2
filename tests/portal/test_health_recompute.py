"""The nightly health recomputation: every customer, chunk by chunk, with their effort-survey answers."""

import pytest
from django.conf import settings

from billing.models import CustomerHealthSnapshot
from portal.models import EffortSurveyResponse
from portal.services.health import customer_health_recompute
from portal.tasks import customer_health_recompute_task
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_customer_health_recompute_scores_everyone_with_effort_answers():
    rated, plain, third = CustomerFactory(), CustomerFactory(), CustomerFactory()
    EffortSurveyResponse.objects.create(customer=rated, change_kind="seats", score=4)
    # chunk size 2: two chunks for three customers
    assert customer_health_recompute(chunk_size=2) == 3
    # mean answer 4 → (4 − 1) / 6 × 100 = 50
    assert CustomerHealthSnapshot.objects.get(customer=rated).components["effort"] == 50
    assert CustomerHealthSnapshot.objects.get(customer=plain).components["effort"] is None
    assert customer_health_recompute_task.run(customer_ids=[third.pk]) == 1
    assert CustomerHealthSnapshot.objects.filter(customer=third).count() == 2


def test_customer_health_nightly_beat_entry():
    assert settings.CELERY_BEAT_SCHEDULE["customer-health-nightly"]["task"] == "portal.customer_health_recompute"
