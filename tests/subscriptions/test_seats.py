import pytest

from subscriptions.exceptions import SeatAssignmentError, SeatsExhausted, SubscriptionNotChangeable
from subscriptions.models import AuditEvent, Role, SeatAssignment, SubscriptionStatus
from subscriptions.services.seats import seat_assign, seat_unassign
from tests.factories import MembershipFactory, SubscriptionFactory, UserFactory


def _member(subscription):
    return MembershipFactory(customer=subscription.customer, role=Role.MEMBER).user


def test_seat_assign_gives_member_a_seat_and_audits(subscription):
    admin, person = UserFactory(), _member(subscription)
    assignment = seat_assign(subscription_id=subscription.pk, user_id=person.pk, actor=admin)
    assert assignment.user == person and assignment.assigned_by == admin
    assert AuditEvent.objects.get(action="seat.assigned").summary == f"{person.email} was given a seat"


def test_seat_assign_is_idempotent(subscription):
    person = _member(subscription)
    first = seat_assign(subscription_id=subscription.pk, user_id=person.pk, actor=None)
    again = seat_assign(subscription_id=subscription.pk, user_id=person.pk, actor=None)
    assert first.pk == again.pk and SeatAssignment.objects.count() == 1


def test_seat_assign_never_exceeds_purchased_seats(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=2)
    for _ in range(2):
        seat_assign(subscription_id=subscription.pk, user_id=_member(subscription).pk, actor=None)
    with pytest.raises(SeatsExhausted) as caught:
        seat_assign(subscription_id=subscription.pk, user_id=_member(subscription).pk, actor=None)
    assert caught.value.message == "All 2 seats are taken. Add seats or unassign someone first."
    assert SeatAssignment.objects.count() == 2


def test_seat_assign_refuses_non_members_and_ended_subscriptions(subscription, catalog):
    with pytest.raises(SeatAssignmentError) as caught:
        seat_assign(subscription_id=subscription.pk, user_id=UserFactory().pk, actor=None)
    assert "Only members of" in caught.value.message
    ended = SubscriptionFactory(package=catalog.team, status=SubscriptionStatus.ENDED)
    with pytest.raises(SubscriptionNotChangeable):
        seat_assign(subscription_id=ended.pk, user_id=_member(ended).pk, actor=None)


def test_seat_unassign_frees_the_seat(subscription):
    person = _member(subscription)
    seat_assign(subscription_id=subscription.pk, user_id=person.pk, actor=None)
    seat_unassign(subscription_id=subscription.pk, user_id=person.pk, actor=None)
    assert not SeatAssignment.objects.exists()
    with pytest.raises(SeatAssignmentError):
        seat_unassign(subscription_id=subscription.pk, user_id=person.pk, actor=None)
