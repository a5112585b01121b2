"""The internal health score is never shown to customers: no customer page or customer API response carries it."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from billing.models import CustomerHealthSnapshot, HealthWeights
from portal.services.health import customer_health_recompute

pytestmark = pytest.mark.django_db

PAGES = ["customer_dashboard", "enablement", "invoices", "activity", "package", "seats", "billing_details", "tax"]
API = ["", "subscriptions/", "entitlements/", "members/", "invoices/", "credit-notes/", "billing-profile/"]


def test_no_customer_page_or_api_response_contains_the_health_score(account, client_for):
    # given a snapshot with a distinctive score and explanation
    HealthWeights.objects.create(seat_adoption=1, activity=0, payment=0, enablement=0, friction=0, effort=0)
    customer_health_recompute(customer_ids=[account.customer.pk])
    snapshot = CustomerHealthSnapshot.objects.get(customer=account.customer)
    assert snapshot.score == 20  # 2 of 10 seats assigned
    markers = [snapshot.explanation, "health", "at_risk", "at risk", snapshot.stage]
    # when the owner (who sees the most) reads every customer page and API resource
    client = client_for(account.owner)
    api = APIClient()
    api.force_authenticate(account.owner)
    bodies = []
    for name in PAGES:
        response = client.get(reverse(f"portal:{name}", args=[account.customer.pk]))
        assert response.status_code == 200, name
        bodies.append(response.content.decode())
    for path in API:
        response = api.get(f"/api/v1/customers/{account.customer.pk}/{path}")
        assert response.status_code == 200, path
        bodies.append(response.content.decode())
    # then none mentions the score, its explanation or the stage
    for body in bodies:
        lowered = body.lower()
        for marker in markers:
            assert marker.lower() not in lowered, marker
