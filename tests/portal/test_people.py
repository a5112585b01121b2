"""Seat assignment, invitations (send, accept, revoke) and role changes from the seats page."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from subscriptions.models import Invitation, Membership, Role, SeatAssignment
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _url(name, account, *args):
    return reverse(f"portal:{name}", args=[account.customer.pk, *args])


def test_assign_and_unassign_a_seat(account, client_for):
    client = client_for(account.billing_admin)
    data = {"subscription_id": account.subscription.pk, "user_id": account.billing_admin.pk}
    page = client.post(_url("seat_assign", account), data, follow=True)
    assert "now has a seat" in page.text
    assert SeatAssignment.objects.filter(subscription=account.subscription, user=account.billing_admin).exists()
    page = client.post(_url("seat_unassign", account), data, follow=True)
    assert "seat is free again" in page.text
    assert not SeatAssignment.objects.filter(subscription=account.subscription, user=account.billing_admin).exists()


def test_assign_when_all_seats_are_taken_says_what_to_do(account, client_for):
    account.subscription.seats = 2
    account.subscription.save()
    page = client_for(account.owner).post(
        _url("seat_assign", account),
        {"subscription_id": account.subscription.pk, "user_id": account.billing_admin.pk},
        follow=True,
    )
    assert "Add seats or unassign someone first" in page.text


def test_cannot_assign_a_seat_to_someone_from_another_customer(account, other_account, client_for):
    response = client_for(account.owner).post(
        _url("seat_assign", account), {"subscription_id": account.subscription.pk, "user_id": other_account.owner.pk}
    )
    assert response.status_code == 404


def test_a_member_cannot_assign_seats_or_invite(account, client_for):
    client = client_for(account.member)
    data = {"subscription_id": account.subscription.pk, "user_id": account.member.pk}
    assert client.post(_url("seat_assign", account), data).status_code == 403
    assert client.post(_url("invite", account), {"email": "x@example.test"}).status_code == 403


def test_invite_then_accept_with_a_new_account_lands_on_the_dashboard(
    account, client_for, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        client_for(account.owner).post(_url("invite", account), {"email": "New.Person@Example.test", "role": "member"})
    assert len(mail.outbox) == 1
    link = re.search(r"http://[^/]+(/invitations/\S+/)", mail.outbox[0].body).group(1)
    visitor = Client()
    page = visitor.get(link)
    assert f"Join {account.customer.name}" in page.text and "new.person@example.test" in page.text
    weak = visitor.post(link, {"name": "New Person", "password": "123"})
    assert weak.status_code == 422 and 'id="inv-password-error"' in weak.text
    joined = visitor.post(link, {"name": "New Person", "password": "a-long-good-passphrase"})
    assert joined["Location"] == reverse("portal:customer_dashboard", args=[account.customer.pk])
    assert Membership.objects.get(user__email="new.person@example.test").role == Role.MEMBER
    assert visitor.get(joined["Location"]).status_code == 200
    assert Client().get(link).status_code == 410  # used up


def test_invite_errors_are_shown_next_to_the_field_and_keep_the_input(account, client_for):
    response = client_for(account.owner).post(_url("invite", account), {"email": account.member.email})
    assert response.status_code == 422
    assert 'id="invite-email-error"' in response.text and "already a member" in response.text
    assert f'value="{account.member.email}"' in response.text


@pytest.mark.parametrize("role", ["owner", "billing_admin", "member"])
def test_a_billing_admin_cannot_invite_anyone(account, client_for, role):
    # subscriptions/policy.py: owners (and admin API keys) invite; the API and the portal answer alike.
    client = client_for(account.billing_admin)
    response = client.post(_url("invite", account), {"email": "boss@example.test", "role": role})
    assert response.status_code == 403
    assert not Invitation.objects.exists()
    assert 'id="invite-email"' not in client.get(_url("seats", account)).text


def test_an_owner_invites_an_owner(account, client_for):
    client_for(account.owner).post(_url("invite", account), {"email": "boss@example.test", "role": "owner"})
    assert Invitation.objects.get().role == "owner"


def test_revoke_an_invitation(account, client_for):
    client = client_for(account.owner)
    client.post(_url("invite", account), {"email": "later@example.test", "role": "member"})
    invitation = Invitation.objects.get()
    client.post(_url("invitation_revoke", account, invitation.pk))
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None


def test_owner_changes_a_role_but_never_removes_the_last_owner(account, client_for):
    client = client_for(account.owner)
    member = Membership.objects.get(user=account.member, customer=account.customer)
    client.post(_url("member_role", account, member.pk), {"role": "billing_admin"})
    member.refresh_from_db()
    assert member.role == Role.BILLING_ADMIN
    other_owner = UserFactory()
    MembershipFactory(customer=account.customer, user=other_owner, role=Role.OWNER)
    me = Membership.objects.get(user=account.owner, customer=account.customer)
    page = client_for(other_owner).post(_url("member_role", account, me.pk), {"action": "remove"}, follow=True)
    assert "no longer has access" in page.text
    last = Membership.objects.get(user=other_owner)
    page = client_for(other_owner).post(_url("member_role", account, last.pk), {"role": "member"}, follow=True)
    assert "needs at least one owner" in page.text


def test_a_billing_admin_cannot_change_roles(account, client_for):
    member = Membership.objects.get(user=account.member, customer=account.customer)
    response = client_for(account.billing_admin).post(_url("member_role", account, member.pk), {"role": "owner"})
    assert response.status_code == 403


def test_accept_an_invitation_while_signed_in_as_the_invitee(account, other_account, client_for):
    from subscriptions.services.members import invitation_create, invitation_url

    invitation = invitation_create(
        customer=account.customer, email=other_account.owner.email, role=Role.BILLING_ADMIN, invited_by=account.owner
    )
    path = invitation_url(invitation).split("://", 1)[1].split("/", 1)[1]
    client = client_for(other_account.owner)
    page = client.get(f"/{path}")
    assert "Accept and open" in page.text
    joined = client.post(f"/{path}")
    assert joined["Location"] == reverse("portal:customer_dashboard", args=[account.customer.pk])
    assert Membership.objects.get(user=other_account.owner, customer=account.customer).role == Role.BILLING_ADMIN
    # Now in two customers: the switcher lists both.
    assert "switch account" in client.get(joined["Location"]).text


def test_someone_else_signed_in_is_told_to_switch_accounts(account, client_for):
    from subscriptions.services.members import invitation_create, invitation_url

    invitation = invitation_create(customer=account.customer, email="new@example.test", invited_by=account.owner)
    path = invitation_url(invitation).split("://", 1)[1].split("/", 1)[1]
    page = client_for(account.member).get(f"/{path}")
    assert "Sign out and sign in as new@example.test" in page.text
    assert "Accept and open" not in page.text
