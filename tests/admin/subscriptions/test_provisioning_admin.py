"""Support sees enablement on the customer page (errors visible) and retries provisioning; billing cannot."""

import pytest
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import AuditEvent, Entitlement, ProvisioningRun
from tests.admin.helpers import customer_with_subscription

pytestmark = pytest.mark.django_db


def _failed(customer):
    Entitlement.objects.create(
        customer=customer,
        feature_key="sso",
        value_kind="boolean",
        desired_value=1,
        applied_value=None,
        state="failed",
        error="Receiver answered 500",
    )
    ProvisioningRun.objects.create(
        customer=customer,
        trigger="subscription.seats",
        outcome="failed",
        attempt=5,
        queued_at=timezone.now(),
        finished_at=timezone.now(),
        error="Receiver answered 500 after 5 attempts",
    )


def test_customer_page_shows_failed_entitlements_runs_and_health(support_client):
    customer = customer_with_subscription()
    _failed(customer)

    page = support_client.get(reverse("admin:subscriptions_customer_change", args=[customer.pk]))

    assert "Receiver answered 500 after 5 attempts" in page.text
    assert "Provisioning failed: sso" in page.text
    assert "Retry provisioning" in page.text
    timeline_kinds = {entry.kind for entry in page.context["c360"].timeline}
    assert {"change", "provisioning"} <= timeline_kinds


def test_support_retries_provisioning_and_it_is_audited(support_client, support_user):
    customer = customer_with_subscription()
    _failed(customer)

    response = support_client.post(
        reverse("admin:subscriptions_customer_retry_provisioning", args=[customer.pk]), {"reason": "Receiver fixed"}
    )

    assert response.status_code == 302
    event = AuditEvent.objects.get(customer=customer, action="entitlements.retry_requested")
    assert (event.actor, event.reason) == (support_user, "Receiver fixed")


def test_billing_staff_cannot_retry_provisioning(billing_client):
    customer = customer_with_subscription()

    page = billing_client.get(reverse("admin:subscriptions_customer_change", args=[customer.pk]))
    response = billing_client.post(reverse("admin:subscriptions_customer_retry_provisioning", args=[customer.pk]))

    assert "Retry provisioning" not in page.text
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(action="entitlements.retry_requested").exists()
