"""Members joining and leaving are events (member.added on accepting an invitation, member.removed)."""

import pytest

from subscriptions.models import Event, Membership, Role
from subscriptions.services.members import invitation_accept, invitation_create, invitation_token, membership_remove
from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_member_added_and_removed_events():
    customer = CustomerFactory()
    owner = UserFactory()
    Membership.objects.create(user=owner, customer=customer, role=Role.OWNER)
    invitation = invitation_create(customer=customer, email="new@member.test", role=Role.MEMBER, invited_by=owner)
    membership = invitation_accept(token=invitation_token(invitation), password="a-long-enough-passphrase-9")
    membership_remove(membership_id=membership.pk, actor=owner)
    events = list(Event.objects.filter(object_type="member").order_by("sequence"))
    assert [(e.type, e.sequence, e.data["email"]) for e in events] == [
        ("member.added", 1, "new@member.test"),
        ("member.removed", 2, "new@member.test"),
    ]
    assert all(e.customer_id == customer.pk for e in events)
