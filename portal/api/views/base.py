"""The base every API view extends: bearer + session auth, the error format, throttling, pagination helpers."""

from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.views import APIView

from portal.api.authentication import BearerAuthentication, CsrfSessionAuthentication
from portal.api.exceptions import api_exception_handler
from portal.api.pagination import ApiPagination
from portal.api.principal import Principal, customer_access, principal_of
from portal.api.schema import ApiAutoSchema
from portal.api.throttling import PrincipalRateThrottle
from subscriptions.policy import Action


class ApiView(APIView):
    schema = ApiAutoSchema()
    authentication_classes = [BearerAuthentication, CsrfSessionAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [PrincipalRateThrottle]
    parser_classes = [JSONParser]

    def get_exception_handler(self):
        return api_exception_handler

    def principal(self) -> Principal:
        principal = principal_of(self.request)
        assert principal is not None  # IsAuthenticated ran first
        return principal

    def access(self, action: Action = Action.ACCOUNT_VIEW):
        return customer_access(self.request, self.kwargs["customer_id"], action)

    def valid_input(self):
        """The view's `Input` serializer over the request body, validated (a coded 400 when it is not valid)."""
        data = self.Input(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data

    def paginate(self, queryset, serializer_class, **context):
        paginator = ApiPagination()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        data = serializer_class(page, many=True, context={"request": self.request, **context}).data
        return paginator.get_paginated_response(data)


class PublicApiView(ApiView):
    """No credentials needed (the catalog, sign-up); a sent credential is still checked."""

    permission_classes: list = []
