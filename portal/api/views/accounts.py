"""Tokens, the catalog, the caller and their customers."""

from django.conf import settings
from django.contrib.auth import authenticate
from django.db.models import Prefetch
from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from portal import lockout
from portal.api.exceptions import error_response
from portal.api.serializers import StrictSerializer, paginated
from portal.api.throttling import TokenObtainPerEmailRateThrottle, TokenObtainRateThrottle
from portal.api.views.base import ApiView, PublicApiView
from portal.services.api_keys import access_token_create
from subscriptions import selectors
from subscriptions.models import Interval, Package, Price
from subscriptions.policy import Action


class TokenObtainApi(PublicApiView):
    """Exchange an e-mail and password for a short-lived bearer token (scripts and the command line)."""

    authentication_classes: list = []
    throttle_classes = [TokenObtainRateThrottle, TokenObtainPerEmailRateThrottle]

    class Input(StrictSerializer):
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    class Output(serializers.Serializer):
        token = serializers.CharField()
        expires_at = serializers.DateTimeField()

    @extend_schema(operation_id="auth_token_create", request=Input, responses={201: Output}, auth=[])
    def post(self, request):
        data = self.valid_input()
        user = authenticate(
            request._request, username=data.validated_data["email"], password=data.validated_data["password"]
        )
        if lockout.refused(request._request):
            # The shared lockout (portal, token endpoint, admin alike) refused to check the password.
            return lockout.handled(error_response(429, "locked_out", lockout.blocked_message(), None))
        if user is None or not user.is_active:
            return lockout.handled(
                error_response(
                    401,
                    "invalid_credentials",
                    "That e-mail address and password do not match an account.",
                    None,
                    headers={"WWW-Authenticate": 'Bearer realm="api"'},
                )
            )
        if user.is_staff and getattr(settings, "STAFF_OTP_REQUIRED", False):
            # A password alone must not open staff access where the back office demands a second factor.
            return error_response(
                403,
                "staff_two_factor_required",
                "Staff accounts sign in to the back office with two-factor authentication; they get no API tokens.",
                None,
            )
        token, plaintext = access_token_create(user=user)
        response = Response(self.Output({"token": plaintext, "expires_at": token.expires_at}).data, status=201)
        # A bearer secret: never kept by a browser or proxy cache (RFC 6749 §5.1).
        add_never_cache_headers(response)
        return response


class PackageListApi(PublicApiView):
    """The public catalog: packages with their features and prices per currency and interval."""

    class PriceOutput(serializers.Serializer):
        currency = serializers.CharField()
        interval = serializers.ChoiceField(choices=Interval.choices)
        flat_amount = serializers.IntegerField(source="flat_amount_minor", help_text="Minor units per interval.")
        seat_amount = serializers.IntegerField(
            source="seat_amount_minor", help_text="Minor units per seat above the included seats, per interval."
        )
        setup_amount = serializers.IntegerField(source="setup_amount_minor", help_text="One-time, minor units.")

    class Output(serializers.Serializer):
        slug = serializers.SlugField()
        name = serializers.CharField()
        tagline = serializers.CharField()
        outcome = serializers.CharField()
        features = serializers.ListField(child=serializers.CharField())
        is_addon = serializers.BooleanField()
        included_seats = serializers.IntegerField()
        min_seats = serializers.IntegerField()
        max_seats = serializers.IntegerField(allow_null=True)
        trial_days = serializers.IntegerField()
        intervals = serializers.ListField(child=serializers.ChoiceField(choices=Interval.choices))
        prices = serializers.SerializerMethodField()

        def get_prices(self, package) -> list[dict]:
            return PackageListApi.PriceOutput(package.active_prices, many=True).data

    @extend_schema(operation_id="packages_list", responses={200: paginated(Output, "Package")}, auth=[])
    def get(self, request):
        packages = (
            Package.objects.filter(is_public=True, is_active=True)
            .prefetch_related(
                Prefetch(
                    "prices",
                    queryset=Price.objects.filter(is_active=True).order_by("currency", "interval"),
                    to_attr="active_prices",
                )
            )
            .order_by("display_order", "name", "id")
        )
        return self.paginate(packages, self.Output)


class MeApi(ApiView):
    """The caller: the user and the customers they act for, with their role in each."""

    class Output(serializers.Serializer):
        user = inline_serializer(
            "MeUser",
            {"id": serializers.IntegerField(), "email": serializers.EmailField(), "name": serializers.CharField()},
            allow_null=True,
        )
        customers = inline_serializer(
            "MeCustomer",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "role": serializers.CharField(
                    help_text="owner, billing_admin or member; for an API key its role: read_only, billing or admin."
                ),
            },
            many=True,
        )
        api_key = inline_serializer(
            "MeApiKey",
            {
                "id": serializers.IntegerField(),
                "name": serializers.CharField(),
                "prefix": serializers.CharField(),
                "role": serializers.CharField(),
            },
            allow_null=True,
            help_text="The API key used for this call, if any.",
        )

    @extend_schema(operation_id="me_retrieve", responses={200: Output})
    def get(self, request):
        principal = self.principal()
        body: dict = {"user": None, "customers": [], "api_key": None}
        if principal.user is not None:
            user = principal.user
            body["user"] = {"id": user.pk, "email": user.email, "name": user.name}
            body["customers"] = [
                {"id": m.customer_id, "name": m.customer.name, "role": m.role}
                for m in selectors.memberships_for_user(user=user)
            ]
        elif principal.api_key is not None:
            key = principal.api_key
            body["customers"] = [{"id": key.customer_id, "name": key.customer.name, "role": key.role}]
            body["api_key"] = {"id": key.pk, "name": key.name, "prefix": key.prefix, "role": key.role}
        return Response(self.Output(body).data)


class CustomerDetailApi(ApiView):
    class Output(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        legal_name = serializers.CharField()
        country = serializers.CharField()
        region = serializers.CharField()
        currency = serializers.CharField()
        billing_anchor_day = serializers.IntegerField()
        created_at = serializers.DateTimeField()
        role = serializers.CharField(help_text="The caller's role for this customer.")

    @extend_schema(operation_id="customer_retrieve", responses={200: Output})
    def get(self, request, customer_id):
        access = self.access(Action.ACCOUNT_VIEW)
        customer = access.customer
        customer.role = access.role.removeprefix("key:")
        return Response(self.Output(customer).data)
