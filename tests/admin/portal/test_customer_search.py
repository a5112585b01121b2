"""Staff find a customer by name, legal name, a member's e-mail, an invoice number or a billing detail."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.admin.helpers import customer_with_subscription, invoice_for
from tests.factories import BillingProfileFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customers():
    acme = customer_with_subscription(name="Acme Inc")
    globex = customer_with_subscription(name="Globex")
    MembershipFactory(customer=acme, user=UserFactory(email="olivia@acme.test"))
    invoice_for(acme, status="open", number="INV-2026-000123")
    BillingProfileFactory(customer=globex, legal_name="Globex Corporation Ltd", tax_id="DE123456789")
    return acme, globex


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("acme", "Acme Inc"),
        ("Acme Inc Ltd", "Acme Inc"),  # legal name (factory: "<name> Ltd")
        ("olivia@acme", "Acme Inc"),
        ("INV-2026-000123", "Acme Inc"),
        ("Globex Corporation", "Globex"),
        ("DE123456789", "Globex"),
    ],
)
def test_customer_search_finds_by_every_handle(support_client, customers, term, expected):
    response = support_client.get(reverse("admin:subscriptions_customer_changelist"), {"q": term})

    assert [customer.name for customer in response.context["cl"].result_list] == [expected]


def test_invoice_review_page_query_count_does_not_grow_with_lines(billing_client):
    customer = customer_with_subscription()
    few = invoice_for(customer, lines=[("Seat", f"SKU-{i}", 1, 100) for i in range(2)], tax_rate="7.25")
    many = invoice_for(customer, lines=[("Seat", f"SKU-{i}", 1, 100) for i in range(30)], tax_rate="7.25")

    def count(invoice) -> int:
        url = reverse("admin:billing_invoice_change", args=[invoice.pk])
        billing_client.get(url)
        with CaptureQueriesContext(connection) as queries:
            assert billing_client.get(url).status_code == 200
        return len(queries)

    assert count(many) <= count(few)
