"""No portal page runs more than 10 queries."""

import pytest
from django.urls import reverse

from tests.portal.conftest import make_invoice

pytestmark = pytest.mark.django_db

CUSTOMER_PAGES = [
    "customer_dashboard",
    "enablement",
    "seats",
    "package",
    "invoices",
    "billing_details",
    "tax",
    "activity",
    "api_keys",
    "survey",
]


@pytest.mark.parametrize("name", CUSTOMER_PAGES)
def test_customer_page_stays_within_ten_queries(account, client_for, django_assert_max_num_queries, name):
    make_invoice(account.customer)
    client = client_for(account.owner)
    url = reverse(f"portal:{name}", args=[account.customer.pk])
    client.get(url)  # first visit may create the billing profile and store the selected customer in the session
    with django_assert_max_num_queries(10):
        response = client.get(url)
    assert response.status_code == 200


def test_invoice_detail_stays_within_ten_queries(account, client_for, django_assert_max_num_queries):
    invoice = make_invoice(account.customer)
    client = client_for(account.owner)
    url = reverse("portal:invoice_detail", args=[account.customer.pk, invoice.pk])
    with django_assert_max_num_queries(10):
        assert client.get(url).status_code == 200


@pytest.mark.parametrize("name", ["pricing", "signup", "login", "password_reset"])
def test_public_page_stays_within_ten_queries(account, client, django_assert_max_num_queries, name):
    with django_assert_max_num_queries(10):
        assert client.get(reverse(f"portal:{name}")).status_code == 200
