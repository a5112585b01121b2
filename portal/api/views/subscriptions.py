"""Subscriptions: read, preview and apply seat and package changes, cancel and reactivate, seat assignments."""

from django.db.models import Count, Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from portal.api.changes import change_apply, change_preview
from portal.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from portal.api.principal import parse_id
from portal.api.serializers import (
    AppliedChangeSerializer,
    AsciiIntegerField,
    ChangeResultSerializer,
    StrictSerializer,
    paginated,
)
from portal.api.views.base import ApiView
from portal.throttle import client_ip
from subscriptions.inputs import MAX_SEATS, MAX_VERSION
from subscriptions.models import Interval, ScheduledChange, Subscription, SubscriptionStatus
from subscriptions.policy import Action


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
        access = self.access(Action.ACCOUNT_VIEW)
        return self.paginate(subscriptions_for_customer(customer=access.customer), SubscriptionSerializer)


class SubscriptionDetailApi(ApiView):
    @extend_schema(operation_id="subscription_retrieve", responses={200: SubscriptionSerializer})
    def get(self, request, customer_id, subscription_id):
        access = self.access(Action.ACCOUNT_VIEW)
        return Response(SubscriptionSerializer(subscription_for_access(access, subscription_id)).data)


# --- changes: preview, then apply exactly what was previewed ---------------------------------------------------


def _service_key(view, request) -> str | None:
    """The Idempotency-Key, namespaced per caller, handed to the change services too (their own replay guard)."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        return None
    return f"api:{view.principal().ident}:{key.strip()}"[:100]


def promotion_code_field():
    return serializers.CharField(
        max_length=40,
        required=False,
        allow_blank=True,
        help_text="A promotion code to apply with the change (case-insensitive). Refused with "
        "promotion_code_invalid / _expired / _not_applicable / _limit_reached; nothing changes then.",
    )


class ChangeApiBase(ApiView):
    action = Action.SEATS_CHANGE
    kind = ""

    def service_params(self, data: dict) -> dict:
        return {}

    def code_params(self, data: dict) -> dict:
        """The promotion code, with what its invalid attempts are throttled on (customer, client address)."""
        if not data.get("promotion_code"):
            return {}
        return {
            "promotion_code": data["promotion_code"],
            "customer_key": str(self.kwargs["customer_id"]),
            "ip": client_ip(self.request),
        }

    def subscription(self):
        # The object first, then the role: a foreign subscription is a 404 whatever the caller's role.
        access = self.access(Action.ACCOUNT_VIEW)
        subscription = subscription_for_access(access, self.kwargs["subscription_id"])
        access.require(self.action)
        return access, subscription


class ChangePreviewApiBase(ChangeApiBase):
    def post(self, request, customer_id, subscription_id):
        _, subscription = self.subscription()
        data = self.valid_input()
        result = change_preview(
            subscription_id=subscription.pk,
            kind=self.kind,
            **self.service_params(data.validated_data),
            **self.code_params(data.validated_data),
        )
        return Response(ChangeResultSerializer(result).data)


class ChangeApplyApiBase(ChangeApiBase):
    version_required = True

    @idempotent
    def post(self, request, customer_id, subscription_id):
        _, subscription = self.subscription()
        data = self.valid_input()
        version = data.validated_data.get("version") or subscription.version
        principal = self.principal()
        result = change_apply(
            subscription_id=subscription.pk,
            kind=self.kind,
            expected_version=version,
            actor=principal.actor,
            actor_kind=principal.actor_kind,
            idempotency_key=_service_key(self, request),
            **self.service_params(data.validated_data),
            **self.code_params(data.validated_data),
        )
        return Response(AppliedChangeSerializer(result).data, status=201)


class SeatsInput(StrictSerializer):
    seats = AsciiIntegerField(min_value=0, max_value=MAX_SEATS)
    promotion_code = promotion_code_field()


class SeatsApplyInput(SeatsInput):
    version = AsciiIntegerField(min_value=1, max_value=MAX_VERSION, help_text="From the preview.")


class SeatChangePreviewApi(ChangePreviewApiBase):
    """Preview changing the purchased seats: increases apply now (prorated), decreases at the period end."""

    kind = "seats"
    Input = SeatsInput

    def service_params(self, data):
        return {"seats": data["seats"]}

    @extend_schema(operation_id="seat_change_preview", request=SeatsInput, responses={200: ChangeResultSerializer})
    def post(self, request, customer_id, subscription_id):
        return super().post(request, customer_id, subscription_id)


class SeatChangeApi(ChangeApplyApiBase):
    """Apply a seat change previewed with the same seats; `version` must be the preview's."""

    kind = "seats"
    Input = SeatsApplyInput

    def service_params(self, data):
        return {"seats": data["seats"]}

    @extend_schema(
        operation_id="seat_change_apply",
        request=SeatsApplyInput,
        responses={201: AppliedChangeSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request, customer_id, subscription_id):
        return super().post(request, customer_id, subscription_id)


class PackageInput(StrictSerializer):
    package = serializers.SlugField(max_length=60, help_text="The package's slug, from /api/v1/packages/.")
    interval = serializers.ChoiceField(choices=Interval.choices, required=False, help_text="Defaults to the current.")
    seats = AsciiIntegerField(min_value=0, max_value=MAX_SEATS, required=False)
    promotion_code = promotion_code_field()


class PackageApplyInput(PackageInput):
    version = AsciiIntegerField(min_value=1, max_value=MAX_VERSION, help_text="From the preview.")


def _package_params(data) -> dict:
    return {"package_slug": data["package"], "interval": data.get("interval"), "seats": data.get("seats")}


class PackageChangePreviewApi(ChangePreviewApiBase):
    """Preview moving to another package and/or interval: upgrades apply now, downgrades at the period end."""

    action = Action.PACKAGE_CHANGE
    kind = "package"
    Input = PackageInput

    def service_params(self, data):
        return _package_params(data)

    @extend_schema(operation_id="package_change_preview", request=PackageInput, responses={200: ChangeResultSerializer})
    def post(self, request, customer_id, subscription_id):
        return super().post(request, customer_id, subscription_id)


class PackageChangeApi(ChangeApplyApiBase):
    action = Action.PACKAGE_CHANGE
    kind = "package"
    Input = PackageApplyInput

    def service_params(self, data):
        return _package_params(data)

    @extend_schema(
        operation_id="package_change_apply",
        request=PackageApplyInput,
        responses={201: AppliedChangeSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request, customer_id, subscription_id):
        return super().post(request, customer_id, subscription_id)


class CancelInput(StrictSerializer):
    version = AsciiIntegerField(
        min_value=1, max_value=MAX_VERSION, required=False, help_text="Refuse if the subscription changed since."
    )
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class ReactivateInput(StrictSerializer):
    version = AsciiIntegerField(min_value=1, max_value=MAX_VERSION, required=False)


class SubscriptionCancelApi(ChangeApplyApiBase):
    """Cancel at the end of the current period (nothing refunded, nothing renews); undo with reactivate."""

    action = Action.PACKAGE_CHANGE
    kind = "cancel"
    Input = CancelInput

    def service_params(self, data):
        return {"reason": data.get("reason", "")}

    @extend_schema(
        operation_id="subscription_cancel",
        request=CancelInput,
        responses={201: AppliedChangeSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request, customer_id, subscription_id):
        return super().post(request, customer_id, subscription_id)


class SubscriptionReactivateApi(ChangeApplyApiBase):
    """Undo a cancellation at period end: the subscription renews as before."""

    action = Action.PACKAGE_CHANGE
    kind = "reactivate"
    Input = ReactivateInput

    @extend_schema(
        operation_id="subscription_reactivate",
        request=ReactivateInput,
        responses={201: AppliedChangeSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request, customer_id, subscription_id):
        return super().post(request, customer_id, subscription_id)
