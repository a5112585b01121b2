"""Entitlements with their provisioning state: for the customer, and for the product being sold (service token)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied

from portal.api.principal import parse_id
from portal.api.serializers import AsciiIntegerField, paginated
from portal.api.views.base import ApiView
from portal.models import ServiceToken
from subscriptions import selectors
from subscriptions.models import Customer
from subscriptions.models.provisioning import EntitlementState
from subscriptions.policy import Action


class EntitlementSerializer(serializers.Serializer):
    feature = serializers.CharField(source="feature_key", help_text="e.g. seats, sso, api_calls_per_month.")
    name = serializers.SerializerMethodField(
        help_text="In the customer's words, e.g. API calls per month, Single sign-on, Seat on Team."
    )
    value = serializers.SerializerMethodField(help_text="The granted value (a limit, 1 for on/off), or null.")
    applied_value = serializers.IntegerField(allow_null=True, help_text="What the product has actually applied.")
    kind = serializers.CharField(source="value_kind")
    state = serializers.ChoiceField(choices=EntitlementState.choices)
    user = serializers.SerializerMethodField(help_text="For per-person entitlements (a seat), whose it is.")
    updated_at = serializers.DateTimeField()

    def get_name(self, entitlement) -> str:
        return selectors.entitlement_name(entitlement)

    def get_value(self, entitlement) -> int | None:
        return entitlement.desired_value if entitlement.desired_value is not None else entitlement.applied_value

    def get_user(self, entitlement) -> dict | None:
        if entitlement.user_id is None:
            return None
        return {"id": entitlement.user_id, "email": entitlement.user.email}


class CustomerEntitlementsApi(ApiView):
    @extend_schema(
        operation_id="customer_entitlements_list", responses={200: paginated(EntitlementSerializer, "Entitlement")}
    )
    def get(self, request, customer_id):
        access = self.access(Action.ACCOUNT_VIEW)
        return self.paginate(selectors.entitlements_for_customer(access.customer), EntitlementSerializer)


class EntitlementQuery(serializers.Serializer):
    customer = AsciiIntegerField(min_value=1, max_value=2**63 - 1, help_text="The customer id.")


class ServiceEntitlementsApi(ApiView):
    """For the product being sold: what a customer is entitled to. Needs a service token (entitlements:read)."""

    @extend_schema(
        operation_id="service_entitlements_list",
        parameters=[EntitlementQuery],
        responses={200: paginated(EntitlementSerializer, "ServiceEntitlement")},
    )
    def get(self, request):
        principal = self.principal()
        token = principal.service_token
        if token is None or not token.has_scope(ServiceToken.Scope.ENTITLEMENTS_READ):
            raise PermissionDenied("This endpoint needs a service token with the entitlements:read scope.")
        query = EntitlementQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        customer = Customer.objects.filter(pk=parse_id(query.validated_data["customer"])).first()
        if customer is None:
            raise NotFound("No such customer.")
        return self.paginate(selectors.entitlements_for_customer(customer), EntitlementSerializer)
