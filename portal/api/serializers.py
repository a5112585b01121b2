"""Serializer building blocks: strict input (unknown fields are an error) and the shared output shapes."""

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError

from subscriptions.inputs import parse_int


class StrictSerializer(serializers.Serializer):
    """Input serializer that rejects keys it does not declare (including read-only ones), at every nesting level.

    A typo such as {"seat": 12} must not silently do nothing.
    """

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(key) for key in data if key not in writable)
            if unknown:
                raise ValidationError(
                    {name: [ErrorDetail(f"Unknown field “{name}”.", code="unknown_field")] for name in unknown}
                )
        return super().to_internal_value(data)


class AsciiIntegerField(serializers.IntegerField):
    """A whole number as a JSON integer or a string of ASCII digits (subscriptions/inputs.py, the parser the portal
    uses too). DRF's IntegerField would take `true` as 1, `12.0` as 12 and `"١٢"` as 12; this one refuses them."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, int):
            return data  # min_value/max_value validators bound it
        number = parse_int(data, minimum=-(2**63), maximum=2**63 - 1)
        if number is None:
            self.fail("invalid")
        return number


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, machine-readable, e.g. seats_below_assigned.")
    message = serializers.CharField(help_text="Readable by the customer.")
    field = serializers.CharField(allow_null=True, help_text="The input field at fault (dotted when nested), or null.")
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Every field error, when there is more than one.",
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class PreviewLineSerializer(serializers.Serializer):
    description = serializers.CharField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    quantity = serializers.IntegerField()
    unit_amount = serializers.IntegerField(help_text="Minor units.")
    amount = serializers.IntegerField(help_text="Minor units; negative for credits.")
    proration = serializers.BooleanField()


class DiscountLineSerializer(serializers.Serializer):
    description = serializers.CharField()
    amount = serializers.IntegerField(help_text="Minor units; negative (positive against a credit line).")


class ChangeResultSerializer(serializers.Serializer):
    """What a preview shows and what an applied change returns: the same shape."""

    lines = PreviewLineSerializer(many=True)
    subtotal = serializers.IntegerField()
    tax = serializers.IntegerField()
    total = serializers.IntegerField()
    amount_due_now = serializers.IntegerField()
    next_recurring_amount = serializers.IntegerField()
    currency = serializers.CharField()
    effective_at = serializers.DateTimeField()
    immediate = serializers.BooleanField(help_text="True when it takes effect now; false at the period end.")
    summary = serializers.CharField(help_text="The change in one sentence.")
    notes = serializers.ListField(child=serializers.CharField())
    billing_mode = serializers.CharField(
        allow_blank=True, help_text="invoice_now, next_invoice or none: how the amount is collected."
    )
    billing_message = serializers.CharField(allow_blank=True, help_text="The same, in words.")
    version = serializers.IntegerField(help_text="The subscription version; send it back to apply.")
    discount_lines = DiscountLineSerializer(many=True, required=False, help_text="One after each discounted line.")
    discount_total = serializers.IntegerField(required=False, help_text="Sum of the discount lines, minor units.")
    discount_description = serializers.CharField(required=False, allow_blank=True)
    discount_ends_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="The period boundary the discount ends at; null: no end."
    )
    promotion_code = serializers.CharField(required=False, allow_blank=True, help_text="The code previewed, if any.")


class AppliedChangeSerializer(ChangeResultSerializer):
    version = serializers.IntegerField(help_text="The subscription's version after the change.")
    change_id = serializers.IntegerField()
    invoice_id = serializers.IntegerField(allow_null=True, help_text="The proration invoice, if one was issued now.")


def paginated(serializer_class: type[serializers.Serializer], name: str) -> serializers.Serializer:
    """The documented shape of a paginated list of `serializer_class` (see portal.api.pagination)."""
    return type(
        f"Paginated{name}List",
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
            "__qualname__": f"Paginated{name}List",
        },
    )()
