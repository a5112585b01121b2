"""Seat assignments: purchased seats given to members. Assigned ≤ purchased always holds.

Both services lock the subscription row first (the same lock seat-count changes take), so an assignment and a seat
decrease can never interleave into "more people than seats". Audited; queue an entitlements reconcile after commit.
"""

from django.db import transaction

from subscriptions.exceptions import SeatAssignmentError, SeatsExhausted, SubscriptionNotChangeable
from subscriptions.models import LIVE_STATUSES, Membership, SeatAssignment, Subscription, User
from subscriptions.services.audit import audit_record
from subscriptions.services.provisioning import entitlements_reconcile_enqueue
from subscriptions.services.terms import seats_phrase


def _lock(subscription_id: int) -> Subscription:
    try:
        return Subscription.objects.select_for_update(of=("self",)).select_related("customer").get(pk=subscription_id)
    except Subscription.DoesNotExist:
        raise SubscriptionNotChangeable("That subscription does not exist.", field="subscription")


def seat_assign(
    *, subscription_id: int, user_id: int, actor: User | None, actor_kind: str | None = None
) -> SeatAssignment:
    """Give `user_id` (a member of the subscription's customer) a seat. Idempotent: an existing seat is returned."""
    with transaction.atomic():
        subscription = _lock(subscription_id)
        if subscription.status not in LIVE_STATUSES:
            raise SubscriptionNotChangeable("Seats can only be assigned on a live subscription.")
        membership = (
            Membership.objects.select_related("user")
            .filter(customer_id=subscription.customer_id, user_id=user_id)
            .first()
        )
        if membership is None:
            raise SeatAssignmentError(f"Only members of {subscription.customer.name} can hold a seat.")
        existing = SeatAssignment.objects.filter(subscription=subscription, user_id=user_id).first()
        if existing is not None:
            return existing
        assigned = SeatAssignment.objects.filter(subscription=subscription).count()
        if assigned >= subscription.seats:
            raise SeatsExhausted(
                f"All {seats_phrase(subscription.seats)} are taken. Add seats or unassign someone first."
            )
        assignment = SeatAssignment.objects.create(subscription=subscription, user_id=user_id, assigned_by=actor)
        audit_record(
            customer=subscription.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="seat.assigned",
            obj=assignment,
            summary=f"{membership.user.email} was given a seat",
            after={"user": membership.user.email, "assigned": assigned + 1, "seats": subscription.seats},
        )
        entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger="seat.assigned")
    return assignment


def seat_unassign(*, subscription_id: int, user_id: int, actor: User | None, actor_kind: str | None = None) -> None:
    """Take the seat back from `user_id`."""
    with transaction.atomic():
        subscription = _lock(subscription_id)
        assignment = (
            SeatAssignment.objects.select_related("user").filter(subscription=subscription, user_id=user_id).first()
        )
        if assignment is None:
            raise SeatAssignmentError("That person does not hold a seat.")
        email = assignment.user.email
        audit_record(
            customer=subscription.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="seat.unassigned",
            obj=assignment,
            summary=f"{email}'s seat was freed",
            before={"user": email},
        )
        assignment.delete()
        entitlements_reconcile_enqueue(customer_id=subscription.customer_id, trigger="seat.unassigned")
