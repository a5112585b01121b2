"""Outbound webhook endpoints of a customer (owners): register, change, rotate the secret, test, read the delivery
log and resend. The signing secret is in the answer of create and rotate only (docs/webhooks.md)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from portal.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from portal.api.principal import parse_id
from portal.api.serializers import StrictSerializer, paginated
from portal.api.views.base import ApiView
from subscriptions.models import SUBSCRIBABLE_EVENT_TYPES, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from subscriptions.policy import Action
from subscriptions.services.webhooks import (
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
    webhook_endpoint_update,
)

EVENT_TYPE_CHOICES = ["*", *SUBSCRIBABLE_EVENT_TYPES]


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    description = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    disabled_reason = serializers.CharField()
    secret_hint = serializers.CharField(help_text="The start of the signing secret; the whole one is shown once.")
    previous_secret_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Until then deliveries are also signed with the previous secret."
    )
    last_success_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret. Shown here once; store it in your receiver.")


class WebhookAttemptSerializer(serializers.Serializer):
    attempted_at = serializers.DateTimeField()
    succeeded = serializers.BooleanField()
    status_code = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField()
    response_excerpt = serializers.CharField(help_text="The first 1 KB of the receiver's answer.")
    error = serializers.CharField()


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.CharField(source="event.public_id")
    event_type = serializers.CharField(source="event.type")
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=DeliveryStatus.choices)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    attempt_log = WebhookAttemptSerializer(many=True)


def _endpoint_for(access, endpoint_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(customer=access.customer, pk=parse_id(endpoint_id)).first()
    if endpoint is None:
        raise NotFound("No such webhook endpoint.")
    return endpoint


class WebhookEndpointListApi(ApiView):
    """The customer's webhook endpoints; POST registers one and answers its signing secret (once)."""

    class Input(StrictSerializer):
        url = serializers.CharField(max_length=500, help_text="https:// and a public address.")
        event_types = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), min_length=1, max_length=len(EVENT_TYPE_CHOICES)
        )
        description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)

    @extend_schema(
        operation_id="webhook_endpoints_list", responses={200: paginated(WebhookEndpointSerializer, "WebhookEndpoint")}
    )
    def get(self, request, customer_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        return self.paginate(
            WebhookEndpoint.objects.filter(customer=access.customer).order_by("pk"), WebhookEndpointSerializer
        )

    @extend_schema(
        operation_id="webhook_endpoint_create",
        request=Input,
        responses={201: WebhookEndpointWithSecretSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @idempotent
    def post(self, request, customer_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        data = self.valid_input()
        principal = self.principal()
        endpoint = webhook_endpoint_create(
            customer=access.customer,
            url=data.validated_data["url"],
            event_types=data.validated_data["event_types"],
            description=data.validated_data["description"],
            actor=principal.actor,
            actor_kind=principal.actor_kind,
        )
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data, status=201)


class WebhookEndpointDetailApi(ApiView):
    class Input(StrictSerializer):
        url = serializers.CharField(max_length=500, required=False)
        event_types = serializers.ListField(
            child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES),
            min_length=1,
            max_length=len(EVENT_TYPE_CHOICES),
            required=False,
        )
        description = serializers.CharField(max_length=200, required=False, allow_blank=True)
        enabled = serializers.BooleanField(required=False)

    @extend_schema(operation_id="webhook_endpoint_retrieve", responses={200: WebhookEndpointSerializer})
    def get(self, request, customer_id, endpoint_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        return Response(WebhookEndpointSerializer(_endpoint_for(access, endpoint_id)).data)

    @extend_schema(operation_id="webhook_endpoint_update", request=Input, responses={200: WebhookEndpointSerializer})
    def patch(self, request, customer_id, endpoint_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        endpoint = _endpoint_for(access, endpoint_id)
        data = self.valid_input()
        principal = self.principal()
        endpoint = webhook_endpoint_update(
            endpoint_id=endpoint.pk, actor=principal.actor, actor_kind=principal.actor_kind, **data.validated_data
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(operation_id="webhook_endpoint_delete", responses={204: None})
    def delete(self, request, customer_id, endpoint_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        endpoint = _endpoint_for(access, endpoint_id)
        principal = self.principal()
        webhook_endpoint_delete(endpoint_id=endpoint.pk, actor=principal.actor, actor_kind=principal.actor_kind)
        return Response(status=204)


class WebhookEndpointRotateSecretApi(ApiView):
    """A new signing secret (answered once); the old one keeps signing for `overlap_hours` (default 24, max 168)."""

    class Input(StrictSerializer):
        overlap_hours = serializers.IntegerField(min_value=0, max_value=168, required=False, default=24)

    @extend_schema(
        operation_id="webhook_endpoint_rotate_secret",
        request=Input,
        responses={200: WebhookEndpointWithSecretSerializer},
    )
    def post(self, request, customer_id, endpoint_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        endpoint = _endpoint_for(access, endpoint_id)
        data = self.valid_input()
        principal = self.principal()
        endpoint = webhook_endpoint_rotate_secret(
            endpoint_id=endpoint.pk,
            overlap_hours=data.validated_data["overlap_hours"],
            actor=principal.actor,
            actor_kind=principal.actor_kind,
        )
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data)


class WebhookEndpointTestApi(ApiView):
    """Send a `webhook_endpoint.test` event to this endpoint now (once, no retries); the answer is its delivery."""

    @extend_schema(operation_id="webhook_endpoint_test", request=None, responses={202: WebhookDeliverySerializer})
    def post(self, request, customer_id, endpoint_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        endpoint = _endpoint_for(access, endpoint_id)
        principal = self.principal()
        delivery = webhook_endpoint_send_test(
            endpoint_id=endpoint.pk, actor=principal.actor, actor_kind=principal.actor_kind
        )
        return Response(WebhookDeliverySerializer(_delivery(delivery.pk)).data, status=202)


def _deliveries():
    return WebhookDelivery.objects.select_related("event").prefetch_related("attempt_log")


def _delivery(delivery_id: int) -> WebhookDelivery:
    return _deliveries().get(pk=delivery_id)


class WebhookDeliveryListApi(ApiView):
    """The delivery log of an endpoint, newest first: every attempt with status, latency and 1 KB of the answer."""

    @extend_schema(
        operation_id="webhook_deliveries_list", responses={200: paginated(WebhookDeliverySerializer, "WebhookDelivery")}
    )
    def get(self, request, customer_id, endpoint_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        endpoint = _endpoint_for(access, endpoint_id)
        return self.paginate(
            _deliveries().filter(endpoint=endpoint).order_by("-created_at", "-pk"), WebhookDeliverySerializer
        )


class WebhookDeliveryResendApi(ApiView):
    """Send the delivery's event again (a new delivery, with its own retries)."""

    @extend_schema(operation_id="webhook_delivery_resend", request=None, responses={202: WebhookDeliverySerializer})
    def post(self, request, customer_id, endpoint_id, delivery_id):
        access = self.access(Action.WEBHOOKS_MANAGE)
        endpoint = _endpoint_for(access, endpoint_id)
        original = WebhookDelivery.objects.filter(endpoint=endpoint, pk=parse_id(delivery_id)).first()
        if original is None:
            raise NotFound("No such delivery.")
        principal = self.principal()
        delivery = webhook_delivery_resend(
            delivery_id=original.pk, actor=principal.actor, actor_kind=principal.actor_kind
        )
        return Response(WebhookDeliverySerializer(_delivery(delivery.pk)).data, status=202)
