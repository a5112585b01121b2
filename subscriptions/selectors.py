"""Reusable read queries for customers, memberships and subscriptions."""

from django.db.models import QuerySet

from subscriptions.models import LIVE_STATUSES, Customer, Membership, Subscription, User


def memberships_for_user(*, user: User) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("customer").order_by("customer__name"))


def subscriptions_live_for_customer(*, customer: Customer) -> QuerySet[Subscription]:
    return (
        Subscription.objects.filter(customer=customer, status__in=LIVE_STATUSES)
        .select_related("package")
        .order_by("created_at")
    )
