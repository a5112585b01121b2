"""The payment-methods and pay-now pages (portal/views/payments.py) against localstripe."""

import pytest
from django.urls import reverse

from billing.models import InvoiceStatus, PaymentMethod, PaymentStatus
from billing.services import payments
from subscriptions.models import Role
from tests.billing.stripe_support import (
    CARD_OK,
    CARD_REQUIRES_AUTHENTICATION,
    authenticate_payment,
    confirm_card_setup,
    open_invoice,
    save_card,
)
from tests.clock import today
from tests.factories import DEFAULT_PASSWORD, CustomerFactory, MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(client):
    membership = MembershipFactory(role=Role.OWNER, customer=CustomerFactory(name="Acme"))
    client.login(email=membership.user.email, password=DEFAULT_PASSWORD)
    client.customer = membership.customer
    client.user = membership.user
    return client


def methods_url(customer):
    return reverse("portal:payment_methods", args=[customer.pk])


def test_payment_methods_page_loads_stripe_js_from_settings(owner_client, stripe_server):
    response = owner_client.get(methods_url(owner_client.customer))

    assert response.status_code == 200
    html = response.content.decode()
    assert f'<script src="{stripe_server.url}/js.stripe.com/v3/"></script>' in html
    assert 'data-client-secret="seti_' in html
    assert "Continuum never sees the number" in html
    assert stripe_server.url in response["Content-Security-Policy"]


def test_payment_methods_page_manual_backend_shows_bank_details(owner_client, settings):
    settings.STRIPE_SECRET_KEY = ""

    response = owner_client.get(methods_url(owner_client.customer))

    assert response.status_code == 200
    assert "Pay by bank transfer" in response.content.decode()
    assert '<script src="https://js.stripe.com' not in response.content.decode()


def test_payment_methods_page_is_for_owners_and_billing_admins(client, stripe_server):
    member = MembershipFactory(role=Role.MEMBER)
    client.login(email=member.user.email, password=DEFAULT_PASSWORD)

    assert client.get(methods_url(member.customer)).status_code == 403
    assert client.get(methods_url(CustomerFactory())).status_code == 404
    client.logout()
    assert client.get(methods_url(member.customer)).status_code == 302


def test_payment_methods_add_remove_and_default_through_the_page(owner_client, stripe_server):
    customer = owner_client.customer
    page = owner_client.get(methods_url(customer)).content.decode()
    client_secret = page.split('data-client-secret="')[1].split('"')[0]
    setup_intent_id = client_secret.split("_secret_")[0]
    confirm_card_setup(stripe_server, client_secret=client_secret, number=CARD_OK)  # what Stripe.js does

    response = owner_client.post(
        reverse("portal:payment_method_added", args=[customer.pk]), {"setup_intent": setup_intent_id}, follow=True
    )

    assert "Card saved: Visa ending in 4242" in response.content.decode()
    first = PaymentMethod.objects.get(customer=customer)
    second = save_card(stripe_server, customer=customer, number="5555555555554444")
    owner_client.post(reverse("portal:payment_method_default", args=[customer.pk, second.pk]))
    second.refresh_from_db()
    assert second.is_default
    owner_client.post(reverse("portal:payment_method_remove", args=[customer.pk, first.pk]))
    first.refresh_from_db()
    assert first.removed_at is not None


def test_payment_methods_cannot_touch_another_customers_card(owner_client, stripe_server):
    foreign = save_card(stripe_server, customer=CustomerFactory())
    customer = owner_client.customer

    response = owner_client.post(reverse("portal:payment_method_remove", args=[customer.pk, foreign.pk]))

    assert response.status_code == 404
    foreign.refresh_from_db()
    assert foreign.removed_at is None


def test_payment_methods_page_query_count_does_not_grow_with_cards(
    owner_client, settings, django_assert_max_num_queries
):
    settings.STRIPE_SECRET_KEY = ""  # no Stripe calls; the list itself is what is measured
    customer = owner_client.customer
    for n in range(30):
        PaymentMethod.objects.create(
            customer=customer,
            stripe_payment_method_id=f"pm_{n}",
            brand="visa",
            last4=f"{n:04d}",
            exp_month=1,
            exp_year=today().year + 4,
        )

    with django_assert_max_num_queries(8):
        response = owner_client.get(methods_url(customer))
    assert response.status_code == 200


def test_invoice_pay_page_pays_with_saved_card(owner_client, stripe_server):
    customer = owner_client.customer
    card = save_card(stripe_server, customer=customer)
    invoice = open_invoice(customer=customer, amount_minor=4_200)
    url = reverse("portal:invoice_pay", args=[customer.pk, invoice.pk])

    page = owner_client.get(url)
    assert page.status_code == 200 and "$42.00" in page.content.decode()

    response = owner_client.post(url, {"payment_method": card.pk}, follow=True)

    assert "Thank you" in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID


def test_invoice_pay_page_with_authentication(owner_client, stripe_server):
    customer = owner_client.customer
    card = save_card(stripe_server, customer=customer, number=CARD_REQUIRES_AUTHENTICATION)
    invoice = open_invoice(customer=customer)
    url = reverse("portal:invoice_pay", args=[customer.pk, invoice.pk])

    response = owner_client.post(url, {"payment_method": card.pk})

    html = response.content.decode()
    assert response.status_code == 200 and "Approve the payment with your bank" in html
    client_secret = html.split('data-client-secret="')[1].split('"')[0]
    payment_id = html.split('name="payment" value="')[1].split('"')[0]
    authenticate_payment(stripe_server, client_secret=client_secret)  # what Stripe.js confirmCardPayment does
    owner_client.post(reverse("portal:invoice_pay_complete", args=[customer.pk, invoice.pk]), {"payment": payment_id})

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert payments.Payment.objects.get(pk=payment_id).status == PaymentStatus.SUCCEEDED


def test_invoice_pay_page_refuses_another_customers_invoice(owner_client, stripe_server):
    invoice = open_invoice(customer=CustomerFactory())

    response = owner_client.get(reverse("portal:invoice_pay", args=[owner_client.customer.pk, invoice.pk]))

    assert response.status_code == 404


def test_pay_now_redirects_to_the_only_open_invoice(owner_client, stripe_server):
    invoice = open_invoice(customer=owner_client.customer)

    response = owner_client.get(reverse("portal:pay_now", args=[owner_client.customer.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("portal:invoice_pay", args=[owner_client.customer.pk, invoice.pk])
