"""The localstripe fixtures give stripe-python a real (fake) Stripe API on 127.0.0.1 with fresh state."""

from urllib.parse import urlsplit

import stripe


def test_localstripe_server_creates_and_reads_back_a_customer_with_stripe_client(localstripe):
    client = stripe.StripeClient("sk_test_harness", base_addresses={"api": localstripe})

    customer = client.v1.customers.create(params={"email": "owner@acme.test", "name": "Acme Inc"})

    assert customer.id.startswith("cus_")
    assert client.v1.customers.retrieve(customer.id).email == "owner@acme.test"
    assert urlsplit(localstripe).hostname == "127.0.0.1"


def test_localstripe_server_works_with_the_global_api_base(localstripe, monkeypatch):
    monkeypatch.setattr(stripe, "api_key", "sk_test_harness")
    monkeypatch.setattr(stripe, "api_base", localstripe)

    customer = stripe.Customer.create(email="ap@acme.test")

    assert [c.id for c in stripe.Customer.list().data] == [customer.id]


def test_localstripe_starts_each_test_without_the_previous_tests_objects(localstripe):
    client = stripe.StripeClient("sk_test_harness", base_addresses={"api": localstripe})

    assert client.v1.customers.list().data == []
