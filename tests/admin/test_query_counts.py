"""Back-office pages run a fixed number of queries however many rows they show."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import Entitlement, ProvisioningRun
from subscriptions.services.notes import staff_note_add
from tests.admin.helpers import customer_with_subscription, exemption_for, invoice_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "admin:subscriptions_customer_changelist",
    "admin:subscriptions_subscription_changelist",
    "admin:subscriptions_auditevent_changelist",
    "admin:subscriptions_membership_changelist",
    "admin:subscriptions_staffnote_changelist",
    "admin:subscriptions_user_changelist",
    "admin:subscriptions_package_changelist",
    "admin:billing_invoice_changelist",
    "admin:billing_creditnote_changelist",
    "admin:billing_taxexemption_changelist",
    "admin:billing_billingprofile_changelist",
    "admin:billing_taxrate_changelist",
    "admin:subscriptions_entitlement_changelist",
    "admin:subscriptions_provisioningrun_changelist",
    "admin:billing_payment_changelist",
    "admin:billing_stripeevent_changelist",
]


def _count(client, url: str) -> int:
    client.get(url)  # warm per-process caches (content types, session) so only the page's own queries count
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


def _provisioning(customer, index: int) -> None:
    Entitlement.objects.create(
        customer=customer, feature_key=f"feature_{index}", value_kind="limit", desired_value=10, state="failed"
    )
    Entitlement.objects.create(
        customer=customer,
        feature_key="seat:team",
        user=UserFactory(),
        value_kind="user_seat",
        desired_value=1,
        applied_value=1,
        state="active",
    )
    ProvisioningRun.objects.create(
        customer=customer, trigger=f"change {index}", outcome="failed", queued_at=timezone.now(), error="boom"
    )


def _payment(invoice, index: int) -> None:
    from billing.models import CreditNote, Payment, Refund, StripeEvent

    payment = Payment.objects.create(
        invoice=invoice,
        customer=invoice.customer,
        attempt=1,
        kind="manual",
        amount_minor=100,
        currency=invoice.currency,
        status="succeeded",
        reference=f"REF-{index}",
    )
    StripeEvent.objects.create(
        stripe_event_id=f"evt_{invoice.pk}", type="invoice.paid", stripe_created=1, payload={}, status="failed"
    )
    for n, refunded in enumerate((True, False)):  # one refunded credit note, one with the refund still owed
        note = CreditNote.objects.create(
            invoice=invoice,
            customer=invoice.customer,
            number=f"CN-Q-{invoice.pk}-{index}-{n}",
            series="CN-Q",
            currency=invoice.currency,
            reason_code="goodwill",
            subtotal_minor=50,
            tax_minor=0,
            total_minor=50,
            refund_due_minor=50,
            issued_at=timezone.now(),
        )
        if refunded:
            Refund.objects.create(
                credit_note=note, payment=payment, amount_minor=50, currency=invoice.currency, reference="OUT"
            )


def _add_customers(n: int, author) -> None:
    for _ in range(n):
        customer = customer_with_subscription(members=2)
        staff_note_add(customer=customer, author=author, body="checked in")
        invoice = invoice_for(customer, hold_reasons=[{"code": "first_invoice", "message": "First invoice"}])
        exemption_for(customer)
        _provisioning(customer, 0)
        _payment(invoice, 0)


def _add_credentials(n: int, actor) -> None:
    from portal.services.api_keys import api_key_create, service_token_create

    for index in range(n):
        customer = customer_with_subscription()
        api_key_create(customer=customer, name=f"key {index}", role="read_only", actor=actor)
        service_token_create(name=f"token {index}", scopes=["entitlements:read"], actor=actor)


@pytest.mark.parametrize("name", ["admin:portal_apikey_changelist", "admin:portal_servicetoken_changelist"])
def test_credential_changelists_query_count_does_not_grow_with_rows(super_client, superuser, name):
    url = reverse(name)
    _add_credentials(2, superuser)
    few = _count(super_client, url)

    _add_credentials(8, superuser)

    assert _count(super_client, url) == few


@pytest.mark.parametrize("name", CHANGELISTS)
def test_admin_changelist_query_count_does_not_grow_with_rows(billing_client, billing_user, name):
    url = reverse(name)
    _add_customers(2, billing_user)
    few = _count(billing_client, url)

    _add_customers(8, billing_user)
    many = _count(billing_client, url)

    assert many == few


def test_customer_360_query_count_does_not_grow_with_history(support_client, support_user):
    customer = customer_with_subscription(members=2)
    url = reverse("admin:subscriptions_customer_change", args=[customer.pk])
    staff_note_add(customer=customer, author=support_user, body="first")
    few = _count(support_client, url)

    for index in range(10):
        staff_note_add(customer=customer, author=UserFactory(is_staff=True), body=f"note {index}")
        customer_membership_user = UserFactory()
        customer.memberships.create(user=customer_membership_user, role="member")
        invoice = invoice_for(customer, status="open", number=f"INV-2026-{index:06d}")
        exemption_for(customer)
        _provisioning(customer, index)
        _payment(invoice, index)
    many = _count(support_client, url)

    assert many == few
