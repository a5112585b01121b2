"""Creating subscriptions."""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from subscriptions.exceptions import (
    InvalidSeatCount,
    PackageNotAvailable,
    SeatsAboveMaximum,
    SeatsBelowMinimum,
)
from subscriptions.models import (
    ActorKind,
    Customer,
    Interval,
    Package,
    Price,
    SeatLedgerEntry,
    Subscription,
    SubscriptionStatus,
    User,
)
from subscriptions.periods import period_end
from subscriptions.services.audit import audit_record
from subscriptions.services.events import subscription_event_record
from subscriptions.services.provisioning import entitlements_reconcile_enqueue
from subscriptions.services.terms import seats_phrase


def subscription_create(
    *,
    customer: Customer,
    package: Package,
    interval: str,
    seats: int,
    start: datetime | None = None,
    trial: bool = False,
    actor: User | None = None,
    actor_kind: str = ActorKind.CUSTOMER,
) -> Subscription:
    """Subscribe `customer` to `package` at its current active price in the customer's currency.

    Snapshots the price; writes the first seat-ledger row and an audit event. With `trial`, the first period is the
    package's trial period and the status is trialing.
    """
    start = start or timezone.now()
    if interval not in Interval.values:
        raise PackageNotAvailable(f"Choose monthly or annual billing, not “{interval}”.", field="interval")
    if isinstance(seats, bool) or not isinstance(seats, int):
        raise InvalidSeatCount("Enter a whole number of seats.")
    if seats < 0:
        raise InvalidSeatCount("The number of seats cannot be negative.")
    if seats < package.min_seats:
        raise SeatsBelowMinimum(f"{package.name} needs at least {seats_phrase(package.min_seats)}.")
    if package.max_seats is not None and seats > package.max_seats:
        raise SeatsAboveMaximum(f"{package.name} allows at most {seats_phrase(package.max_seats)}.")
    price = Price.objects.filter(package=package, currency=customer.currency, interval=interval, is_active=True).first()
    if price is None or not package.is_active or package.is_addon:
        raise PackageNotAvailable(
            f"{package.name} is not offered with {interval}ly billing in {customer.currency}.", field="package"
        )
    with transaction.atomic():
        if trial and package.trial_days:
            end = start + timedelta(days=package.trial_days)
            status = SubscriptionStatus.TRIALING
        else:
            end = period_end(start, interval)
            status = SubscriptionStatus.ACTIVE
        subscription = Subscription.objects.create(
            customer=customer,
            package=package,
            price=price,
            interval=interval,
            currency=price.currency,
            flat_amount_minor=price.flat_amount_minor,
            seat_amount_minor=price.seat_amount_minor,
            included_seats=package.included_seats,
            status=status,
            seats=seats,
            committed_seats=seats if interval == "year" else 0,
            current_period_start=start,
            current_period_end=end,
            # A trial's first paid period starts when it ends, and the billing cycle is anchored there (Stripe).
            billing_anchor=end if status == SubscriptionStatus.TRIALING else start,
            trial_end=end if status == SubscriptionStatus.TRIALING else None,
        )
        SeatLedgerEntry.objects.create(
            subscription=subscription,
            seats_from=0,
            seats_to=seats,
            reason="subscribed",
            actor=actor,
            effective_at=start,
        )
        audit_record(
            customer=customer,
            actor=actor,
            actor_kind=actor_kind,
            action="subscription.created",
            obj=subscription,
            summary=f"Subscribed to {package.name} ({interval}ly) with {seats} seats",
            after={"package": package.slug, "interval": interval, "seats": seats, "status": status},
        )
        subscription_event_record(subscription, change="created")
        entitlements_reconcile_enqueue(customer_id=customer.pk, trigger=f"subscription {subscription.pk} created")
    return subscription
