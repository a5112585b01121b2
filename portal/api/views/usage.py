"""POST /api/v1/usage/: the product being sold reports daily active use and feature use (service token, usage:write)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from portal.api.serializers import AsciiIntegerField, StrictSerializer
from portal.api.views.base import ApiView
from portal.models import ServiceToken
from subscriptions.models import UsageKind
from subscriptions.services.usage import MAX_COUNT, MAX_RECORDS_PER_REQUEST, UsageInput, usage_records_submit

BIG = 2**63 - 1


class UsageRecordInput(StrictSerializer):
    customer = AsciiIntegerField(min_value=1, max_value=BIG, help_text="The customer id.")
    user = AsciiIntegerField(
        min_value=1, max_value=BIG, required=False, allow_null=True, help_text="A member's id; omit for the customer."
    )
    day = serializers.DateField(help_text="The UTC day of the activity, at most 35 days ago, not in the future.")
    kind = serializers.ChoiceField(choices=UsageKind.choices)
    feature = serializers.CharField(
        max_length=64, required=False, default="", allow_blank=True, help_text="For kind=feature: the feature key."
    )
    count = AsciiIntegerField(min_value=0, max_value=MAX_COUNT, required=False, default=1)


class UsageSubmitInput(StrictSerializer):
    records = UsageRecordInput(many=True, max_length=MAX_RECORDS_PER_REQUEST, min_length=1)


class UsageSubmitOutput(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()


class UsageSubmitApi(ApiView):
    """Idempotent by the natural key (customer, user, day, kind, feature): a replay replaces the count."""

    @extend_schema(operation_id="usage_submit", request=UsageSubmitInput, responses={200: UsageSubmitOutput})
    def post(self, request):
        token = self.principal().service_token
        if token is None or not token.has_scope(ServiceToken.Scope.USAGE_WRITE):
            raise PermissionDenied("This endpoint needs a service token with the usage:write scope.")
        data = UsageSubmitInput(data=request.data)
        data.is_valid(raise_exception=True)
        records = [
            UsageInput(
                customer_id=r["customer"],
                user_id=r.get("user"),
                day=r["day"],
                kind=r["kind"],
                feature=r.get("feature", ""),
                count=r.get("count", 1),
            )
            for r in data.validated_data["records"]
        ]
        return Response(usage_records_submit(records=records))
