"""Every portal page renders with the demo data, for every demo role (what `make run` shows)."""

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from billing.models import Invoice
from subscriptions.models import Customer

pytestmark = pytest.mark.django_db

PAGES = ["customer_dashboard", "seats", "package", "invoices", "billing_details", "tax", "activity", "api_keys"]


@pytest.fixture
def demo(db):
    call_command("seed_demo", verbosity=0)


@pytest.mark.parametrize(
    "email,allowed",
    [
        ("owner@acme.test", set(PAGES)),
        ("ap@acme.test", {"customer_dashboard", "seats", "invoices", "billing_details", "tax"}),
        ("dev@acme.test", {"customer_dashboard", "seats"}),
        ("owner@globex.test", set(PAGES)),
        ("owner@initech.test", set(PAGES)),
        ("owner@umbrella.test", set(PAGES)),
    ],
)
def test_demo_users_see_their_pages(demo, email, allowed):
    client = Client()
    assert client.login(username=email, password="continuum-demo")
    customer_id = int(client.get(reverse("portal:dashboard"))["Location"].strip("/").split("/")[-1])
    for name in PAGES:
        response = client.get(reverse(f"portal:{name}", args=[customer_id]))
        assert response.status_code == (200 if name in allowed else 403), (email, name)
    if "invoices" in allowed:
        for invoice in Invoice.objects.filter(customer_id=customer_id, issued_at__isnull=False)[:3]:
            detail = client.get(reverse("portal:invoice_detail", args=[customer_id, invoice.pk]))
            assert detail.status_code == 200


def test_demo_german_customer_sees_euros_in_german_format(demo):
    client = Client()
    client.login(username="owner@initech.test", password="continuum-demo")
    customer = Customer.objects.get(name="Initech GmbH")
    page = client.get(reverse("portal:customer_dashboard", args=[customer.pk]))
    assert "\u00a0€" in page.text and ",00" in page.text


def test_public_pages_with_demo_catalog(demo, client):
    pricing = client.get(reverse("portal:pricing"))
    assert "Starter" in pricing.text and "Team" in pricing.text and "Business" in pricing.text
    signup = client.get(reverse("portal:signup"), {"package": "business", "interval": "year"})
    assert signup.status_code == 200 and 'value="business" selected' in signup.text
