"""Self-serve sign-up over the API: the same service as the portal's sign-up page (portal.services.signup)."""

import base64
import binascii

from django.core.files.base import ContentFile
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from billing.models import ExemptionType
from portal.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from portal.api.serializers import StrictSerializer
from portal.api.throttling import TokenObtainRateThrottle
from portal.api.views.base import PublicApiView
from portal.api.views.subscriptions import SubscriptionSerializer, subscriptions_for_customer
from portal.services.api_keys import access_token_create
from portal.services.signup import ExemptionDeclaration, SignupInvalid, signup_create
from portal.throttle import client_ip
from subscriptions.models import Interval

MAX_CERTIFICATE_BASE64 = 7_000_000  # a little over 5 MB once decoded; the service enforces 5 MB


class BillingAddressInput(StrictSerializer):
    legal_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    line1 = serializers.CharField(max_length=200)
    line2 = serializers.CharField(max_length=200, required=False, allow_blank=True)
    city = serializers.CharField(max_length=100)
    postal_code = serializers.CharField(max_length=20)
    tax_id = serializers.CharField(max_length=40, required=False, allow_blank=True)
    billing_emails = serializers.ListField(child=serializers.EmailField(max_length=254), max_length=20, required=False)


class TaxExemptionDeclarationInput(StrictSerializer):
    jurisdiction = serializers.CharField(max_length=200, help_text="e.g. US-NY; several comma-separated.")
    certificate_number = serializers.CharField(max_length=80)
    expires_on = serializers.DateField()
    exemption_type = serializers.ChoiceField(choices=ExemptionType.choices, required=False, default="other")
    certificate = serializers.CharField(
        max_length=MAX_CERTIFICATE_BASE64, help_text="The certificate file (PDF, PNG or JPEG), base64-encoded."
    )


class SignupApi(PublicApiView):
    """Create a company, its owner and its first subscription (a trial where the package offers one)."""

    throttle_classes = [TokenObtainRateThrottle]

    class Input(StrictSerializer):
        company = serializers.CharField(max_length=200)
        country = serializers.CharField(max_length=2, help_text="ISO 3166-1 alpha-2, e.g. US.")
        region = serializers.CharField(max_length=10, required=False, allow_blank=True, default="")
        currency = serializers.CharField(max_length=3, required=False, default="USD")
        name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
        email = serializers.EmailField(max_length=254, help_text="The owner's e-mail address (their login).")
        password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True)
        package = serializers.SlugField(max_length=60)
        interval = serializers.ChoiceField(choices=Interval.choices)
        seats = serializers.IntegerField(min_value=1, max_value=1_000_000)
        trial = serializers.BooleanField(required=False, default=False)
        billing_address = BillingAddressInput()
        tax_exemption = TaxExemptionDeclarationInput(required=False)
        promotion_code = serializers.CharField(
            max_length=40,
            required=False,
            allow_blank=True,
            help_text="Redeemed on the new subscription; a refused code (promotion_code_*) creates nothing.",
        )

    class Output(serializers.Serializer):
        user = serializers.DictField()
        customer = serializers.DictField()
        subscription = SubscriptionSerializer()
        token = serializers.CharField(help_text="A short-lived access token for the new owner.")
        expires_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="signup", request=Input, responses={201: Output}, auth=[], parameters=[IDEMPOTENCY_PARAMETER]
    )
    @idempotent
    def post(self, request):
        data = self.valid_input()
        values = data.validated_data
        address = values["billing_address"]
        billing = {
            "legal_name": address.get("legal_name") or values["company"],
            "address_line1": address["line1"],
            "address_line2": address.get("line2", ""),
            "city": address["city"],
            "postal_code": address["postal_code"],
        }
        if address.get("tax_id"):
            billing["tax_id"] = address["tax_id"]
        if address.get("billing_emails"):
            billing["billing_emails"] = address["billing_emails"]
        exemption = None
        if values.get("tax_exemption"):
            declared = values["tax_exemption"]
            try:
                content = base64.b64decode(declared["certificate"], validate=True)
            except (binascii.Error, ValueError):
                raise SignupInvalid("The certificate must be base64-encoded.", field="tax_exemption.certificate")
            exemption = ExemptionDeclaration(
                jurisdictions=declared["jurisdiction"],
                exemption_type=declared["exemption_type"],
                certificate_number=declared["certificate_number"],
                expires_on=declared["expires_on"],
                certificate=ContentFile(content, name="certificate"),
            )
        result = signup_create(
            package_slug=values["package"],
            interval=values["interval"],
            seats=values["seats"],
            trial=values["trial"],
            company_name=values["company"],
            country=values["country"],
            region=values["region"],
            currency=values["currency"],
            name=values["name"],
            email=values["email"],
            password=values["password"],
            billing=billing,
            exemption=exemption,
            promotion_code=values.get("promotion_code") or None,
            client_ip=client_ip(request),
        )
        token, plaintext = access_token_create(user=result.user)
        subscription = subscriptions_for_customer(customer=result.customer).get(pk=result.subscription.pk)
        body = {
            "user": {"id": result.user.pk, "email": result.user.email, "name": result.user.name},
            "customer": {"id": result.customer.pk, "name": result.customer.name, "role": "owner"},
            "subscription": subscription,
            "token": plaintext,
            "expires_at": token.expires_at,
        }
        return Response(self.Output(body).data, status=201)
