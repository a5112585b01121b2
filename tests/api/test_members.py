"""Members and seat assignments over the API."""

import pytest
from django.core import mail

from subscriptions.models import Invitation, SeatAssignment
from subscriptions.services.subscriptions import subscription_create
from tests.api.conftest import ROLES, as_user, assert_error, caller
from tests.factories import priced_package

pytestmark = pytest.mark.django_db


@pytest.fixture
def sub(acme):
    return subscription_create(customer=acme.customer, package=priced_package(slug="team"), interval="month", seats=2)


@pytest.mark.parametrize("who", ["owner", "billing_admin", "key:admin", "key:billing", "key:read_only"])
def test_members_list_shows_everyone(acme, who):
    body = caller(acme, who).get(f"/api/v1/customers/{acme.customer.pk}/members/").json()
    assert body["count"] == 3
    assert {(m["user"]["email"], m["role"]) for m in body["results"]} == {
        ("owner@acme.test", "owner"),
        ("billing_admin@acme.test", "billing_admin"),
        ("member@acme.test", "member"),
    }


def test_members_list_member_sees_only_themselves(acme):
    body = as_user(acme.member).get(f"/api/v1/customers/{acme.customer.pk}/members/").json()
    assert [m["user"]["email"] for m in body["results"]] == ["member@acme.test"]


@pytest.mark.parametrize("who", ROLES)
def test_members_of_other_customer_is_404(acme, globex, who):
    client = caller(acme, who)
    assert_error(client.get(f"/api/v1/customers/{globex.customer.pk}/members/"), 404, "not_found")
    response = client.post(f"/api/v1/customers/{globex.customer.pk}/members/", {"email": "x@y.test"}, format="json")
    assert_error(response, 404, "not_found")
    assert not Invitation.objects.exists()


def test_member_invite_sends_an_invitation(acme, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = as_user(acme.owner).post(
            f"/api/v1/customers/{acme.customer.pk}/members/",
            {"email": "New.Person@Acme.test", "role": "billing_admin"},
            format="json",
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["email"], body["role"]) == ("new.person@acme.test", "billing_admin")
    assert Invitation.objects.get().invited_by == acme.owner
    assert [m.to for m in mail.outbox] == [["new.person@acme.test"]]


def test_member_invite_existing_member_is_422(acme):
    response = as_user(acme.owner).post(
        f"/api/v1/customers/{acme.customer.pk}/members/", {"email": "member@acme.test"}, format="json"
    )
    assert_error(response, 422, "invitation_invalid", "email")


@pytest.mark.parametrize("who", ["member", "key:read_only", "billing_admin", "key:billing"])
def test_member_invite_forbidden_for_readers(acme, who):
    response = caller(acme, who).post(
        f"/api/v1/customers/{acme.customer.pk}/members/", {"email": "x@acme.test"}, format="json"
    )
    assert_error(response, 403, "permission_denied")


def test_member_invite_unknown_field_and_bad_role(acme):
    client = as_user(acme.owner)
    members = f"/api/v1/customers/{acme.customer.pk}/members/"
    assert_error(
        client.post(members, {"email": "a@b.test", "admin": True}, format="json"), 400, "unknown_field", "admin"
    )
    assert_error(
        client.post(members, {"email": "a@b.test", "role": "god"}, format="json"), 400, "invalid_choice", "role"
    )


def test_seat_assign_list_and_unassign(acme, sub):
    client = as_user(acme.billing_admin)
    seats = f"/api/v1/customers/{acme.customer.pk}/subscriptions/{sub.pk}/seat-assignments/"
    response = client.post(seats, {"user": acme.member.pk}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["user"]["email"] == "member@acme.test"
    assert client.get(seats).json()["count"] == 1
    assert client.get(f"/api/v1/customers/{acme.customer.pk}/subscriptions/{sub.pk}/").json()["seats_assigned"] == 1
    assert client.delete(f"{seats}{acme.member.pk}/").status_code == 204
    assert not SeatAssignment.objects.exists()
    assert_error(client.delete(f"{seats}{acme.member.pk}/"), 404, "not_found")


def test_seat_assign_when_exhausted_is_422(acme, sub):
    client = as_user(acme.owner)
    seats = f"/api/v1/customers/{acme.customer.pk}/subscriptions/{sub.pk}/seat-assignments/"
    for user in (acme.owner, acme.billing_admin):
        assert client.post(seats, {"user": user.pk}, format="json").status_code == 201
    assert_error(client.post(seats, {"user": acme.member.pk}, format="json"), 422, "seats_exhausted")


def test_seat_assign_non_member_is_422(acme, globex, sub):
    seats = f"/api/v1/customers/{acme.customer.pk}/subscriptions/{sub.pk}/seat-assignments/"
    response = as_user(acme.owner).post(seats, {"user": globex.owner.pk}, format="json")
    assert_error(response, 422, "seat_assignment_invalid")


def test_seat_assignments_member_sees_own_only_and_cannot_assign(acme, sub):
    SeatAssignment.objects.create(subscription=sub, user=acme.owner)
    SeatAssignment.objects.create(subscription=sub, user=acme.member)
    client = as_user(acme.member)
    seats = f"/api/v1/customers/{acme.customer.pk}/subscriptions/{sub.pk}/seat-assignments/"
    assert [a["user"]["email"] for a in client.get(seats).json()["results"]] == ["member@acme.test"]
    assert_error(client.post(seats, {"user": acme.member.pk}, format="json"), 403, "permission_denied")


@pytest.mark.parametrize("who", ROLES)
def test_seat_assignments_of_other_customer_are_404(acme, globex, who):
    foreign = subscription_create(
        customer=globex.customer, package=priced_package(slug="team"), interval="month", seats=2
    )
    SeatAssignment.objects.create(subscription=foreign, user=globex.member)
    client = caller(acme, who)
    for customer_id in (globex.customer.pk, acme.customer.pk):
        seats = f"/api/v1/customers/{customer_id}/subscriptions/{foreign.pk}/seat-assignments/"
        assert_error(client.get(seats), 404, "not_found")
        assert_error(client.post(seats, {"user": globex.member.pk}, format="json"), 404, "not_found")
        assert_error(client.delete(f"{seats}{globex.member.pk}/"), 404, "not_found")
    assert SeatAssignment.objects.filter(subscription=foreign).count() == 1


# Issue 15, hole 1: a billing admin (token) or a billing key answered 201 to an owner invitation, and the new owner
# could then open the owner-only pages. Only owners invite owners; an admin key invites, but never an owner.
@pytest.mark.parametrize("who", ["billing_admin", "key:billing", "key:admin"])
def test_member_invite_owner_refused_unless_an_owner_asks(acme, who):
    response = caller(acme, who).post(
        f"/api/v1/customers/{acme.customer.pk}/members/", {"email": "boss@evil.test", "role": "owner"}, format="json"
    )
    assert_error(response, 403, "permission_denied")
    assert not Invitation.objects.exists()


def test_member_invite_owner_by_an_owner(acme):
    response = as_user(acme.owner).post(
        f"/api/v1/customers/{acme.customer.pk}/members/", {"email": "boss@acme.test", "role": "owner"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert Invitation.objects.get().role == "owner"


def test_member_invite_with_a_key_is_recorded_as_made_by_the_key(acme):
    from subscriptions.models import AuditEvent

    response = caller(acme, "key:admin").post(
        f"/api/v1/customers/{acme.customer.pk}/members/", {"email": "dev@acme.test"}, format="json"
    )
    assert response.status_code == 201, response.content
    invitation = Invitation.objects.get()
    assert invitation.invited_by is None  # not the key's creator (acme.owner)
    assert invitation.invited_by_key.startswith("API key ck_") and "admin key" in invitation.invited_by_key
    event = AuditEvent.objects.get(action="invitation.created")
    assert (event.actor, event.actor_kind) == (None, "api")
    assert event.after["api_key"] == invitation.invited_by_key
