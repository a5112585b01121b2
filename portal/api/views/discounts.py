"""Discounts on a subscription: preview the next invoice with a promotion code, then redeem it.

Both calls run every check redeeming makes (expiry, limits, first-time customers, minimum seats, packages,
currency); a bad code is a coded 4xx — promotion_code_invalid, promotion_code_expired, promotion_code_not_applicable,
promotion_code_limit_reached (429 promotion_code_throttled after too many invalid attempts) — and changes nothing.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from billing.services.discounts import discount_preview, discount_redeem, next_invoice_preview
from portal.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from portal.api.serializers import DiscountLineSerializer, PreviewLineSerializer, StrictSerializer
from portal.api.views.base import ApiView
from portal.api.views.subscriptions import subscription_for_access
from portal.throttle import client_ip
from subscriptions.policy import Action


class PromotionCodeInput(StrictSerializer):
    promotion_code = serializers.CharField(max_length=40, help_text="Case-insensitive, e.g. LAUNCH20.")


class NextInvoiceSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    currency = serializers.CharField()
    lines = PreviewLineSerializer(many=True)
    discount_lines = DiscountLineSerializer(many=True)
    discount_total = serializers.IntegerField(help_text="Sum of the discount lines, minor units (≤ 0).")
    discount_description = serializers.CharField(allow_blank=True)
    discount_ends_at = serializers.DateTimeField(allow_null=True, help_text="Null: the discount has no end.")
    promotion_code = serializers.CharField(allow_blank=True)
    subtotal = serializers.IntegerField(help_text="After discounts, before tax.")
    tax = serializers.IntegerField(help_text="Computed on the discounted amounts.")
    total = serializers.IntegerField()


class DiscountSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    coupon = serializers.CharField(source="coupon.name")
    promotion_code = serializers.CharField(source="promotion_code.code", allow_null=True, default=None)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField(allow_null=True)
    periods_total = serializers.IntegerField(allow_null=True)


class DiscountAppliedSerializer(serializers.Serializer):
    discount = DiscountSerializer()
    next_invoice = NextInvoiceSerializer()


def next_invoice_shape(preview) -> dict:
    return {
        "period_start": preview.period_start,
        "period_end": preview.period_end,
        "currency": preview.currency,
        "lines": [
            {
                "description": line.description,
                "period_start": line.period_start,
                "period_end": line.period_end,
                "quantity": line.quantity,
                "unit_amount": line.unit_amount_minor,
                "amount": line.amount_minor,
                "proration": line.proration,
            }
            for line in preview.lines
        ],
        "discount_lines": [{"description": d.description, "amount": d.amount_minor} for d in preview.discount_lines],
        "discount_total": preview.discount_minor,
        "discount_description": preview.discount_description,
        "discount_ends_at": preview.discount_ends_at,
        "promotion_code": preview.promotion_code,
        "subtotal": preview.subtotal_minor,
        "tax": preview.tax_minor,
        "total": preview.total_minor,
    }


class _DiscountApiBase(ApiView):
    def subscription(self):
        # The object first, then the role: a foreign subscription is a 404 whatever the caller's role.
        access = self.access(Action.ACCOUNT_VIEW)
        subscription = subscription_for_access(access, self.kwargs["subscription_id"])
        access.require(Action.BILLING_EDIT)
        return access, subscription

    def throttle_params(self) -> dict:
        return {"customer_key": str(self.kwargs["customer_id"]), "ip": client_ip(self.request)}


class DiscountPreviewApi(_DiscountApiBase):
    """Preview the next invoice with a promotion code: its discount lines, the new total and when it ends."""

    @extend_schema(operation_id="discount_preview", request=PromotionCodeInput, responses={200: NextInvoiceSerializer})
    def post(self, request, customer_id, subscription_id):
        _, subscription = self.subscription()
        data = PromotionCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        preview = discount_preview(
            subscription=subscription, promotion_code=data.validated_data["promotion_code"], **self.throttle_params()
        )
        return Response(NextInvoiceSerializer(next_invoice_shape(preview)).data)


class DiscountApplyApi(_DiscountApiBase):
    """Redeem a promotion code on the subscription; returns the discount and the next invoice with it."""

    @extend_schema(
        operation_id="discount_apply",
        request=PromotionCodeInput,
        responses={201: DiscountAppliedSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @idempotent
    def post(self, request, customer_id, subscription_id):
        _, subscription = self.subscription()
        data = PromotionCodeInput(data=request.data)
        data.is_valid(raise_exception=True)
        discount = discount_redeem(
            customer=subscription.customer,
            subscription=subscription,
            promotion_code=data.validated_data["promotion_code"],
            actor=self.principal().actor,
            **self.throttle_params(),
        )
        body = {
            "discount": discount,
            "next_invoice": next_invoice_shape(next_invoice_preview(subscription=subscription)),
        }
        return Response(DiscountAppliedSerializer(body).data, status=201)
