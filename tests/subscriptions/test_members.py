from datetime import timedelta

import pytest
from django.core import mail, signing
from django.test import override_settings
from django.utils import timezone

from subscriptions.exceptions import InvitationError, InvitationExpired, LastOwner, MembershipError
from subscriptions.models import AuditEvent, Invitation, Membership, Role, SeatAssignment, User
from subscriptions.services.members import (
    invitation_accept,
    invitation_create,
    invitation_from_token,
    invitation_resend,
    invitation_revoke,
    invitation_token,
    membership_change_role,
    membership_remove,
)
from tests.factories import CustomerFactory, MembershipFactory, SeatAssignmentFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase-42"


@pytest.fixture
def owner_membership():
    return MembershipFactory(customer=CustomerFactory(name="Acme Inc"), role=Role.OWNER)


@override_settings(SITE_URL="https://portal.example.test")
def test_invitation_create_emails_a_signed_accept_link(
    owner_membership, django_capture_on_commit_callbacks, time_machine
):
    # The link's signature carries a timestamp: a stopped clock makes the token below the one that was e-mailed.
    time_machine.move_to(timezone.now(), tick=False)
    with django_capture_on_commit_callbacks(execute=True):
        invitation = invitation_create(
            customer=owner_membership.customer,
            email="  New.Person@Example.test ",
            role=Role.BILLING_ADMIN,
            invited_by=owner_membership.user,
        )
    assert invitation.email == "new.person@example.test"
    assert invitation.expires_at > timezone.now() + timedelta(days=6)
    [message] = mail.outbox
    assert message.to == ["new.person@example.test"]
    assert "Acme Inc" in message.subject
    link = f"https://portal.example.test/invitations/{invitation_token(invitation)}/"
    assert link in message.body
    assert "billing admin" in message.body
    assert AuditEvent.objects.get(action="invitation.created").actor == owner_membership.user


@pytest.mark.parametrize(
    ("email", "role", "error", "message"),
    [
        ("not-an-email", Role.MEMBER, InvitationError, "“not-an-email” is not a valid e-mail address."),
        ("x@example.test", "king", MembershipError, "Choose owner, billing admin or member."),
    ],
)
def test_invitation_create_refuses_bad_input(owner_membership, email, role, error, message):
    with pytest.raises(error) as caught:
        invitation_create(customer=owner_membership.customer, email=email, role=role, invited_by=None)
    assert caught.value.message == message
    assert not Invitation.objects.exists()


def test_invitation_create_refuses_existing_member(owner_membership):
    with pytest.raises(InvitationError) as caught:
        invitation_create(
            customer=owner_membership.customer, email=owner_membership.user.email.upper(), invited_by=None
        )
    assert "is already a member of Acme Inc" in caught.value.message


def test_invitation_accept_creates_account_and_membership(owner_membership):
    invitation = invitation_create(customer=owner_membership.customer, email="new@example.test", invited_by=None)
    membership = invitation_accept(token=invitation_token(invitation), name="New Person", password=PASSWORD)
    assert membership.customer == owner_membership.customer and membership.role == Role.MEMBER
    user = User.objects.get(email="new@example.test")
    assert user.check_password(PASSWORD) and user.name == "New Person"
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    with pytest.raises(InvitationError) as caught:
        invitation_accept(token=invitation_token(invitation), password=PASSWORD)
    assert caught.value.message == "This invitation has already been accepted."


def test_invitation_accept_as_signed_in_user_with_matching_email(owner_membership):
    user = UserFactory(email="someone@example.test")
    invitation = invitation_create(customer=owner_membership.customer, email="Someone@example.test", invited_by=None)
    membership = invitation_accept(token=invitation_token(invitation), user=user)
    assert membership.user == user


def test_invitation_accept_refuses_other_signed_in_user_and_weak_password(owner_membership):
    invitation = invitation_create(customer=owner_membership.customer, email="new@example.test", invited_by=None)
    token = invitation_token(invitation)
    with pytest.raises(InvitationError) as caught:
        invitation_accept(token=token, user=UserFactory(email="other@example.test"))
    assert "was sent to new@example.test" in caught.value.message
    with pytest.raises(InvitationError) as caught:
        invitation_accept(token=token, password="123")
    assert caught.value.field == "password"
    assert not User.objects.filter(email="new@example.test").exists()


def test_invitation_accept_refuses_tampered_expired_and_revoked_links(owner_membership):
    invitation = invitation_create(customer=owner_membership.customer, email="new@example.test", invited_by=None)
    token = invitation_token(invitation)
    with pytest.raises(InvitationError) as caught:
        invitation_from_token(token[:-2] + "xx")
    assert caught.value.message.startswith("This invitation link is not valid")
    forged = signing.dumps({"i": invitation.pk, "e": "evil@example.test"}, salt="continuum.invitation")
    with pytest.raises(InvitationError):
        invitation_from_token(forged)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(InvitationExpired):
        invitation_accept(token=token, password=PASSWORD)
    invitation_resend(invitation_id=invitation.pk, actor=None)
    assert invitation_from_token(token).pk == invitation.pk
    invitation_revoke(invitation_id=invitation.pk, actor=owner_membership.user)
    with pytest.raises(InvitationError) as caught:
        invitation_accept(token=token, password=PASSWORD)
    assert caught.value.message == "This invitation was withdrawn. Ask for a new one."


def test_invitation_resend_sends_again_with_fresh_expiry(owner_membership, django_capture_on_commit_callbacks):
    invitation = invitation_create(customer=owner_membership.customer, email="new@example.test", invited_by=None)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        invitation_resend(invitation_id=invitation.pk, actor=owner_membership.user)
    invitation.refresh_from_db()
    assert invitation.expires_at > timezone.now() + timedelta(days=6)
    assert len(mail.outbox) == 1


def test_invitation_create_again_replaces_pending_invitation(owner_membership):
    first = invitation_create(customer=owner_membership.customer, email="new@example.test", invited_by=None)
    invitation_create(customer=owner_membership.customer, email="new@example.test", invited_by=None)
    with pytest.raises(InvitationError):
        invitation_from_token(invitation_token(first))


def test_membership_change_role_refuses_demoting_last_owner(owner_membership):
    with pytest.raises(LastOwner) as caught:
        membership_change_role(membership_id=owner_membership.pk, role=Role.MEMBER, actor=None)
    assert caught.value.message == "Acme Inc needs at least one owner. Make someone else an owner first."
    owner_membership.refresh_from_db()
    assert owner_membership.role == Role.OWNER


def test_membership_change_role_with_another_owner(owner_membership):
    other = MembershipFactory(customer=owner_membership.customer, role=Role.MEMBER)
    membership_change_role(membership_id=other.pk, role=Role.OWNER, actor=owner_membership.user)
    membership_change_role(membership_id=owner_membership.pk, role=Role.BILLING_ADMIN, actor=other.user)
    owner_membership.refresh_from_db()
    assert owner_membership.role == Role.BILLING_ADMIN
    event = AuditEvent.objects.filter(action="membership.role_changed").first()
    assert (event.before, event.after) == ({"role": "owner"}, {"role": "billing_admin"})


def test_membership_remove_refuses_last_owner_and_frees_seats(owner_membership, catalog):
    with pytest.raises(LastOwner):
        membership_remove(membership_id=owner_membership.pk, actor=None)
    member = MembershipFactory(customer=owner_membership.customer, role=Role.MEMBER)
    subscription = SubscriptionFactory(customer=owner_membership.customer, package=catalog.team)
    SeatAssignmentFactory(subscription=subscription, user=member.user)
    membership_remove(membership_id=member.pk, actor=owner_membership.user)
    assert not Membership.objects.filter(pk=member.pk).exists()
    assert not SeatAssignment.objects.exists()
    assert AuditEvent.objects.get(action="membership.removed").before["seats_freed"] == 1


# The service enforces who may grant which role whatever surface calls it (subscriptions/policy.py).
@pytest.mark.parametrize(
    "inviter_role,role,allowed",
    [
        ("owner", "owner", True),
        ("owner", "billing_admin", True),
        ("billing_admin", "owner", False),
        ("billing_admin", "member", False),
        ("member", "member", False),
    ],
)
def test_invitation_create_only_owners_invite_and_only_owners_grant_owner(
    owner_membership, inviter_role, role, allowed
):
    from subscriptions.exceptions import RoleNotGrantable
    from tests.factories import MembershipFactory

    inviter = MembershipFactory(customer=owner_membership.customer, role=inviter_role).user
    if allowed:
        invitation = invitation_create(
            customer=owner_membership.customer, email="new@example.test", role=role, invited_by=inviter
        )
        assert invitation.invited_by == inviter
    else:
        with pytest.raises(RoleNotGrantable):
            invitation_create(
                customer=owner_membership.customer, email="new@example.test", role=role, invited_by=inviter
            )
        assert not Invitation.objects.exists()


@pytest.mark.parametrize(
    "scope,role,allowed", [("admin", "member", True), ("admin", "owner", False), ("billing", "member", False)]
)
def test_invitation_create_with_a_key_scope(owner_membership, scope, role, allowed):
    from subscriptions.exceptions import RoleNotGrantable

    kwargs = {
        "customer": owner_membership.customer,
        "email": "new@example.test",
        "role": role,
        "invited_by": owner_membership.user,
        "api_key_scope": scope,
        "api_key_label": "API key ck_x (CI)",
    }
    if allowed:
        assert invitation_create(**kwargs).invited_by is None
    else:
        with pytest.raises(RoleNotGrantable):
            invitation_create(**kwargs)


def test_membership_role_changes_and_removals_are_the_owners_whatever_the_caller(owner_membership):
    from subscriptions.exceptions import RoleNotGrantable

    billing_admin = MembershipFactory(customer=owner_membership.customer, role=Role.BILLING_ADMIN)
    member = MembershipFactory(customer=owner_membership.customer, role=Role.MEMBER)
    with pytest.raises(RoleNotGrantable):
        membership_change_role(membership_id=member.pk, role=Role.OWNER, actor=billing_admin.user)
    with pytest.raises(RoleNotGrantable):
        membership_remove(membership_id=member.pk, actor=billing_admin.user)
    member.refresh_from_db()
    assert member.role == Role.MEMBER
