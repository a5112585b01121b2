"""Subscriptions: read, preview and apply seat and package changes, cancel and reactivate, seat assignments."""

from django.db.models import Count, Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from portal.api.principal import Capability, parse_id
from portal.api.serializers import paginated
from portal.api.views.base import ApiView
from subscriptions.models import Interval, ScheduledChange, Subscription, SubscriptionStatus


def subscriptions_for_customer(*, customer):
    return (
        Subscription.objects.filter(customer=customer)
        .select_related("package")
        .annotate(seats_assigned=Count("seat_assignments", distinct=True))
        .prefetch_related(
            Prefetch(
                "scheduled_changes",
                queryset=ScheduledChange.objects.filter(applied_at__isnull=True, canceled_at__isnull=True),
                to_attr="pending_changes",
            )
        )
        .order_by("-created_at", "-id")
    )


def subscription_for_access(access, subscription_id) -> Subscription:
    """The customer's subscription, or 404 (also for another customer's subscription: no existence leak)."""
    subscription = subscriptions_for_customer(customer=access.customer).filter(pk=parse_id(subscription_id)).first()
    if subscription is None:
        raise NotFound("No such subscription.")
    return subscription


class PackageRefSerializer(serializers.Serializer):
    slug = serializers.SlugField()
    name = serializers.CharField()


class ScheduledChangeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="seats, package or remove_addon")
    payload = serializers.DictField(help_text='What changes, e.g. {"seats": 8} or {"package": "team"}.')
    effective_at = serializers.DateTimeField()


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=SubscriptionStatus.choices)
    package = PackageRefSerializer()
    interval = serializers.ChoiceField(choices=Interval.choices)
    currency = serializers.CharField()
    seats = serializers.IntegerField()
    seats_assigned = serializers.IntegerField()
    current_period_start = serializers.DateTimeField()
    current_period_end = serializers.DateTimeField()
    trial_end = serializers.DateTimeField(allow_null=True)
    cancel_at_period_end = serializers.BooleanField()
    scheduled_changes = ScheduledChangeSerializer(many=True, source="pending_changes")
    version = serializers.IntegerField()


class SubscriptionListApi(ApiView):
    @extend_schema(
        operation_id="subscriptions_list", responses={200: paginated(SubscriptionSerializer, "Subscription")}
    )
    def get(self, request, customer_id):
        access = self.access(Capability.READ)
        return self.paginate(subscriptions_for_customer(customer=access.customer), SubscriptionSerializer)


class SubscriptionDetailApi(ApiView):
    @extend_schema(operation_id="subscription_retrieve", responses={200: SubscriptionSerializer})
    def get(self, request, customer_id, subscription_id):
        access = self.access(Capability.READ)
        return Response(SubscriptionSerializer(subscription_for_access(access, subscription_id)).data)
