import pytest
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from subscriptions.models import Customer, Membership, Subscription, User

pytestmark = pytest.mark.django_db


def test_user_logs_in_with_email_case_insensitively(client):
    User.objects.create_user("Someone@Example.test", "s3cret-passw0rd")
    assert client.login(username="someone@example.test", password="s3cret-passw0rd")


def test_seed_demo_is_idempotent():
    call_command("seed_demo")
    counts = (User.objects.count(), Customer.objects.count(), Membership.objects.count(), Subscription.objects.count())
    call_command("seed_demo")
    assert (
        User.objects.count(),
        Customer.objects.count(),
        Membership.objects.count(),
        Subscription.objects.count(),
    ) == counts
    assert set(Customer.objects.values_list("name", flat=True)) >= {
        "Acme Inc",
        "Globex Corp",
        "Initech GmbH",
        "Umbrella LLC",
    }


def test_demo_owner_sees_acme_dashboard(client):
    call_command("seed_demo")
    response = client.post(reverse("portal:login"), {"username": "owner@acme.test", "password": "continuum-demo"})
    assert response.status_code == 302
    page = client.get(reverse("portal:dashboard"), follow=True)
    assert page.status_code == 200
    assert "Acme Inc" in page.text
    assert "Team" in page.text


def test_demo_admin_reaches_admin(client):
    call_command("seed_demo")
    client.login(username="admin@continuum.test", password="continuum-demo")
    assert client.get("/admin/").status_code == 200


def test_wrong_password_shows_a_clear_error_without_saying_which_part(client):
    call_command("seed_demo")
    response = client.post(reverse("portal:login"), {"username": "owner@acme.test", "password": "nope"})
    assert response.status_code == 200
    assert "correct email address and password" in response.text.replace("e-mail", "email")


@override_settings(DEBUG=False)
def test_unknown_page_renders_styled_404(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "couldn" in response.text and "site.css" in response.text


def test_every_response_carries_request_id_and_csp(client):
    response = client.get(reverse("portal:login"), headers={"X-Request-ID": "abc-123"})
    assert response["X-Request-ID"] == "abc-123"
    assert "script-src 'self'" in response["Content-Security-Policy"]
