"""Roles come from a data migration; each role can do what the back office promises and nothing more."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from subscriptions.models import AuditEvent, Package, Price, StaffNote
from tests.admin.helpers import customer_with_subscription, live_subscription

pytestmark = pytest.mark.django_db


def _codenames(group_name: str) -> set[str]:
    group = Group.objects.get(name=group_name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_groups_migration_creates_support_agents_with_read_access_and_customer_actions():
    perms = _codenames("Support agents")
    assert {"subscriptions.view_customer", "subscriptions.view_subscription", "subscriptions.view_auditevent"} <= perms
    assert {"subscriptions.change_subscription", "subscriptions.change_invitation"} <= perms
    assert "subscriptions.add_staffnote" in perms
    # The catalog and users are read-only for support.
    assert not {p for p in perms if p.endswith(("_package", "_sku", "_price", "_user")) and ".view_" not in p}


def test_groups_migration_creates_billing_staff_read_only_on_catalog_and_subscriptions():
    perms = _codenames("Billing staff")
    assert {"subscriptions.view_package", "subscriptions.view_price", "subscriptions.view_subscription"} <= perms
    assert "subscriptions.change_subscription" not in perms
    assert not {
        p for p in perms if p.startswith("subscriptions.") and p.split(".")[1].startswith(("change_", "delete_"))
    }


@pytest.mark.parametrize("client_fixture", ["support_client", "billing_client", "super_client"])
def test_admin_every_role_reads_customers_subscriptions_and_audit(request, client_fixture):
    client = request.getfixturevalue(client_fixture)
    customer = customer_with_subscription(name="Acme Inc")
    subscription = live_subscription(customer)
    event = AuditEvent.objects.filter(customer=customer).first()
    for url in [
        reverse("admin:subscriptions_customer_changelist"),
        reverse("admin:subscriptions_customer_change", args=[customer.pk]),
        reverse("admin:subscriptions_subscription_changelist"),
        reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
        reverse("admin:subscriptions_auditevent_changelist"),
        reverse("admin:subscriptions_auditevent_change", args=[event.pk]),
        reverse("admin:subscriptions_package_changelist"),
    ]:
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("client_fixture", ["support_client", "billing_client"])
def test_catalog_change_is_forbidden_to_staff_by_crafted_post(request, client_fixture):
    client = request.getfixturevalue(client_fixture)
    customer_with_subscription()
    package = Package.objects.get(slug="team")
    page = client.get(reverse("admin:subscriptions_package_change", args=[package.pk]))
    assert page.status_code == 200
    assert 'name="_save"' not in page.text

    response = client.post(
        reverse("admin:subscriptions_package_change", args=[package.pk]), {"name": "Hacked", "slug": "team"}
    )

    assert response.status_code == 403
    package.refresh_from_db()
    assert package.name == "Team"


def test_audit_events_are_read_only_even_for_superusers(super_client):
    customer = customer_with_subscription()
    event = AuditEvent.objects.filter(customer=customer).first()

    response = super_client.post(
        reverse("admin:subscriptions_auditevent_change", args=[event.pk]), {"summary": "rewritten"}
    )
    delete = super_client.post(reverse("admin:subscriptions_auditevent_delete", args=[event.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert delete.status_code == 403
    event.refresh_from_db()
    assert event.summary != "rewritten"


def test_subscription_money_and_status_are_not_editable_by_anyone(super_client):
    subscription = live_subscription(customer_with_subscription(seats=5))

    response = super_client.post(
        reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
        {"seats": 500, "status": "canceled", "flat_amount_minor": 0},
    )

    assert response.status_code == 403
    subscription.refresh_from_db()
    assert (subscription.seats, subscription.status) == (5, "active")


def test_support_cannot_grant_themselves_back_office_rights(support_client, support_user):
    response = support_client.post(
        reverse("admin:subscriptions_user_change", args=[support_user.pk]),
        {"email": support_user.email, "is_superuser": "on", "is_staff": "on"},
    )
    assert response.status_code == 403
    support_user.refresh_from_db()
    assert not support_user.is_superuser


@pytest.mark.parametrize("client_fixture", ["support_client", "billing_client"])
def test_staff_note_add_from_customer_page_is_audited(request, client_fixture):
    client = request.getfixturevalue(client_fixture)
    customer = customer_with_subscription()

    response = client.post(
        reverse("admin:subscriptions_customer_add_note", args=[customer.pk]), {"body": "Called about invoice 12"}
    )

    assert response.status_code == 302
    note = StaffNote.objects.get(customer=customer)
    assert note.body == "Called about invoice 12"
    event = AuditEvent.objects.get(customer=customer, action="customer.note_added")
    assert event.actor == note.author
    page = client.get(reverse("admin:subscriptions_customer_change", args=[customer.pk]))
    assert "Called about invoice 12" in page.text


def test_staff_note_add_refuses_an_empty_note(support_client):
    customer = customer_with_subscription()

    response = support_client.post(
        reverse("admin:subscriptions_customer_add_note", args=[customer.pk]), {"body": "   "}, follow=True
    )

    assert "Write the note before saving it." in response.text
    assert not StaffNote.objects.exists()


def test_staff_without_note_permission_gets_403(db, client):
    from tests.factories import UserFactory

    customer = customer_with_subscription()
    plain_staff = UserFactory(is_staff=True)
    client.force_login(plain_staff)

    response = client.post(reverse("admin:subscriptions_customer_add_note", args=[customer.pk]), {"body": "hi"})

    assert response.status_code == 403
    assert not StaffNote.objects.exists()


def test_superuser_adds_a_price_row_but_cannot_rewrite_an_existing_price(super_client):
    customer_with_subscription()
    package = Package.objects.get(slug="team")
    page = super_client.get(reverse("admin:subscriptions_package_change", args=[package.pk]))
    assert page.status_code == 200
    # Existing prices are shown read-only: no input for their amounts.
    assert 'name="prices-0-flat_amount_minor"' not in page.text
    assert Price.objects.filter(package=package).count() == 4
