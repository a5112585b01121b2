"""Billing: the billing profile, invoices (and their PDFs), credit notes and tax exemptions.

Customer callers see issued invoices only (open, paid, void, uncollectible); staff also see drafts and held ones.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response

from billing import selectors as billing_selectors
from billing.exceptions import CertificateInvalid
from billing.exceptions import NotFound as BillingNotFound
from billing.models import (
    BillingProfile,
    ChangeBillingMode,
    ExemptionStatus,
    ExemptionType,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
)
from billing.services.documents import invoice_einvoice_for_customer, invoice_pdf_for_customer
from billing.services.exemptions import tax_exemption_submit
from billing.services.profiles import billing_address_problems, billing_profile_update
from portal.api.idempotency import IDEMPOTENCY_PARAMETER, idempotent
from portal.api.principal import parse_id
from portal.api.serializers import StrictSerializer, paginated
from portal.api.views.base import ApiView
from portal.downloads import attachment_response
from subscriptions.policy import Action

# --- billing profile ---------------------------------------------------------------------------------------------


class BillingProfileSerializer(serializers.Serializer):
    legal_name = serializers.CharField(max_length=200, allow_blank=True)
    address_line1 = serializers.CharField(max_length=200, allow_blank=True)
    address_line2 = serializers.CharField(max_length=200, allow_blank=True)
    city = serializers.CharField(max_length=100, allow_blank=True)
    region = serializers.CharField(max_length=50, allow_blank=True, help_text="State/province code, e.g. CA.")
    postal_code = serializers.CharField(max_length=20, allow_blank=True)
    country = serializers.CharField(max_length=2, allow_blank=True, help_text="ISO 3166-1 alpha-2.")
    billing_emails = serializers.ListField(child=serializers.EmailField(max_length=254), max_length=20)
    standing_po_number = serializers.CharField(max_length=60, allow_blank=True)
    requires_po = serializers.BooleanField()
    tax_id = serializers.CharField(max_length=40, allow_blank=True)
    tax_id_valid = serializers.BooleanField(read_only=True)
    payment_terms_days = serializers.IntegerField(min_value=0, max_value=365)
    invoice_language = serializers.ChoiceField(choices=["en", "de", "fr", "es"])
    currency = serializers.CharField(max_length=3, min_length=3)
    change_billing_mode = serializers.ChoiceField(choices=ChangeBillingMode.choices)
    address_problems = serializers.SerializerMethodField()

    def get_address_problems(self, profile) -> list[str]:
        return billing_address_problems(profile=profile)


class BillingProfilePatchSerializer(StrictSerializer, BillingProfileSerializer):
    pass


class BillingProfileApi(ApiView):
    """The customer's billing details (legal name, address, e-mails, tax ID, PO, terms). PATCH changes some."""

    def _profile(self, customer) -> BillingProfile:
        profile = billing_selectors.billing_profile_for_customer(customer=customer)
        if profile is None:  # not created yet: show what it would start with, without writing on a GET
            profile = BillingProfile(
                customer=customer,
                legal_name=customer.legal_name or customer.name,
                country=customer.country,
                region=customer.region,
                currency=customer.currency,
            )
        return profile

    @extend_schema(operation_id="billing_profile_retrieve", responses={200: BillingProfileSerializer})
    def get(self, request, customer_id):
        access = self.access(Action.BILLING_VIEW)
        return Response(BillingProfileSerializer(self._profile(access.customer)).data)

    @extend_schema(
        operation_id="billing_profile_update",
        request=BillingProfilePatchSerializer(partial=True),
        responses={200: BillingProfileSerializer},
    )
    def patch(self, request, customer_id):
        access = self.access(Action.BILLING_EDIT)
        data = BillingProfilePatchSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        principal = self.principal()
        profile = billing_profile_update(
            customer=access.customer,
            actor=principal.actor,
            actor_kind=principal.actor_kind,
            **dict(data.validated_data),
        )
        return Response(BillingProfileSerializer(profile).data)


# --- invoices ----------------------------------------------------------------------------------------------------


class InvoiceLineSerializer(serializers.Serializer):
    description = serializers.CharField()
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    quantity = serializers.IntegerField()
    unit_amount = serializers.IntegerField(source="unit_amount_minor")
    amount = serializers.IntegerField(source="amount_minor")
    proration = serializers.BooleanField(source="is_proration")
    tax_rate = serializers.DecimalField(max_digits=7, decimal_places=4, coerce_to_string=True, help_text="Percent.")
    tax_name = serializers.CharField()


class InvoiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField(allow_null=True, help_text="Assigned when issued; null on drafts (staff only).")
    status = serializers.ChoiceField(choices=InvoiceStatus.choices)
    kind = serializers.CharField()
    currency = serializers.CharField()
    subtotal = serializers.IntegerField(source="subtotal_minor")
    tax = serializers.IntegerField(source="tax_minor")
    total = serializers.IntegerField(source="total_minor")
    amount_paid = serializers.IntegerField(source="amount_paid_minor")
    amount_credited = serializers.IntegerField(source="amount_credited_minor")
    amount_due = serializers.IntegerField(source="amount_due_minor")
    period_start = serializers.DateTimeField(allow_null=True)
    period_end = serializers.DateTimeField(allow_null=True)
    issued_at = serializers.DateTimeField(allow_null=True)
    due_on = serializers.DateField(allow_null=True)
    po_number = serializers.CharField()


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, source="ordered_lines")


class InvoiceFilter(serializers.Serializer):
    status = serializers.ChoiceField(choices=InvoiceStatus.choices, required=False)
    issued_from = serializers.DateField(required=False, help_text="Issued on or after this date (UTC).")
    issued_to = serializers.DateField(required=False, help_text="Issued on or before this date (UTC).")

    def validate(self, attrs):
        # DRF drops an empty optional query parameter silently; `?status=` is a mistake, not "every status".
        for name in self.fields:
            if name in self.initial_data and not str(self.initial_data.get(name, "")).strip():
                raise serializers.ValidationError({name: "Leave the filter out to list all; it cannot be empty."})
        return attrs


def _invoices_for(access):
    if access.sees_unissued_invoices:
        return Invoice.objects.filter(customer=access.customer).order_by("-issued_at", "-created_at", "-id")
    return billing_selectors.invoice_list_for_customer(customer=access.customer)


def _invoice_for(access, invoice_id) -> Invoice:
    invoice = _invoices_for(access).filter(pk=parse_id(invoice_id)).first()
    if invoice is None:
        raise BillingNotFound("That invoice does not exist.")
    invoice.ordered_lines = list(InvoiceLine.objects.filter(invoice=invoice).order_by("position", "id"))
    return invoice


class InvoiceListApi(ApiView):
    """Invoices, newest first; filter by status and issue date. Customers never see draft or held invoices."""

    @extend_schema(
        operation_id="invoices_list",
        parameters=[InvoiceFilter],
        responses={200: paginated(InvoiceSerializer, "Invoice")},
    )
    def get(self, request, customer_id):
        access = self.access(Action.BILLING_VIEW)
        filters = InvoiceFilter(data=request.query_params)
        filters.is_valid(raise_exception=True)
        invoices = _invoices_for(access)
        if "status" in filters.validated_data:
            invoices = invoices.filter(status=filters.validated_data["status"])
        if "issued_from" in filters.validated_data:
            invoices = invoices.filter(issued_at__date__gte=filters.validated_data["issued_from"])
        if "issued_to" in filters.validated_data:
            invoices = invoices.filter(issued_at__date__lte=filters.validated_data["issued_to"])
        return self.paginate(invoices, InvoiceSerializer)


class InvoiceDetailApi(ApiView):
    @extend_schema(operation_id="invoice_retrieve", responses={200: InvoiceDetailSerializer})
    def get(self, request, customer_id, invoice_id):
        access = self.access(Action.BILLING_VIEW)
        return Response(InvoiceDetailSerializer(_invoice_for(access, invoice_id)).data)


class PdfRenderer(BaseRenderer):
    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class InvoicePdfApi(ApiView):
    """The issued invoice as a PDF (the same document as e-mailed)."""

    renderer_classes = [JSONRenderer, PdfRenderer]

    @extend_schema(
        operation_id="invoice_pdf",
        responses={(200, "application/pdf"): OpenApiTypes.BINARY},
    )
    def get(self, request, customer_id, invoice_id):
        access = self.access(Action.BILLING_VIEW)
        invoice = _invoice_for(access, invoice_id)
        if invoice.status not in billing_selectors.CUSTOMER_VISIBLE:
            raise BillingNotFound("A draft has no PDF yet; it is rendered when the invoice is issued.")
        pdf, filename = invoice_pdf_for_customer(customer=access.customer, invoice_id=invoice.pk)
        return attachment_response(pdf, content_type="application/pdf", filename=filename)

    def finalize_response(self, request, response, *args, **kwargs):
        # Errors are JSON whatever the Accept header asked for.
        if isinstance(response, Response) and not isinstance(response.data, bytes | type(None)):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


class XmlRenderer(PdfRenderer):
    media_type = "application/xml"
    format = "xml"


class XRechnungRenderer(XmlRenderer):
    # `?format=` is DRF's renderer override, so each e-invoice format is a renderer of its own.
    format = "xrechnung"


class InvoiceEInvoiceApi(InvoicePdfApi):
    """The issued invoice's e-invoice: the Factur-X PDF (EN 16931 XML embedded; the same file as e-mailed),
    `?format=xml` the embedded XML alone, `?format=xrechnung` the XRechnung 3.0 (CII) XML. 404 for an invoice that
    was not issued as an e-invoice."""

    renderer_classes = [JSONRenderer, PdfRenderer, XmlRenderer, XRechnungRenderer]

    @extend_schema(
        operation_id="invoice_einvoice",
        parameters=[
            OpenApiParameter(
                "format", str, enum=["pdf", "xml", "xrechnung"], description="pdf (default), xml or xrechnung"
            )
        ],
        responses={(200, "application/pdf"): OpenApiTypes.BINARY, (200, "application/xml"): OpenApiTypes.BINARY},
    )
    def get(self, request, customer_id, invoice_id):
        access = self.access(Action.BILLING_VIEW)
        invoice = _invoice_for(access, invoice_id)
        if invoice.status not in billing_selectors.CUSTOMER_VISIBLE:
            raise BillingNotFound("A draft has no e-invoice yet; it is made when the invoice is issued.")
        fmt = request.query_params.get("format", "pdf")
        data, filename, content_type = invoice_einvoice_for_customer(
            customer=access.customer, invoice_id=invoice.pk, fmt=fmt
        )
        return attachment_response(data, content_type=content_type, filename=filename)


# --- credit notes ------------------------------------------------------------------------------------------------


class RefundSerializer(serializers.Serializer):
    amount = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["none", "pending", "refunded", "failed"])
    method = serializers.ChoiceField(choices=["card", "bank_transfer"], allow_null=True)


class CreditNoteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField()
    invoice = serializers.SerializerMethodField()
    currency = serializers.CharField()
    reason_code = serializers.CharField()
    reason = serializers.CharField(source="reason_text")
    subtotal = serializers.IntegerField(source="subtotal_minor")
    tax = serializers.IntegerField(source="tax_minor")
    total = serializers.IntegerField(source="total_minor")
    is_full = serializers.BooleanField()
    issued_at = serializers.DateTimeField()
    refund = serializers.SerializerMethodField(
        help_text="What goes back to the customer: `amount` (minor units, 0 when the credit only lowered what was "
        "still due), `status` (`none`, `pending`, `refunded`, `failed`) and `method` (`card`, `bank_transfer`, "
        "or null while pending without a recorded method)."
    )

    def get_invoice(self, credit_note) -> dict:
        return {"id": credit_note.invoice_id, "number": credit_note.invoice.number}

    @extend_schema_field(RefundSerializer)
    def get_refund(self, credit_note) -> dict:
        summary = billing_selectors.credit_note_refund_summary(credit_note=credit_note)
        return {"amount": summary.amount_minor, "status": summary.status, "method": summary.method}


class CreditNoteListApi(ApiView):
    @extend_schema(operation_id="credit_notes_list", responses={200: paginated(CreditNoteSerializer, "CreditNote")})
    def get(self, request, customer_id):
        access = self.access(Action.BILLING_VIEW)
        return self.paginate(
            billing_selectors.credit_note_list_for_customer(customer=access.customer), CreditNoteSerializer
        )


# --- tax exemptions ----------------------------------------------------------------------------------------------


# The API's exemption states are exactly these four. The model also has `superseded` (a newer
# certificate replaced this one); to API callers a replaced certificate is no longer in force, so it reads `expired`
# and `replaced_by` names the certificate that replaced it (docs/api.md). ENUM_NAME_OVERRIDES points the schema's
# ExemptionStatusEnum here, so the documented enum is what is returned.
EXEMPTION_API_STATUSES = [
    (ExemptionStatus.SUBMITTED.value, "Submitted, awaiting review"),
    (ExemptionStatus.APPROVED.value, "Approved: invoices are not taxed in its jurisdictions until it expires"),
    (ExemptionStatus.REJECTED.value, "Rejected: see decision_reason"),
    (ExemptionStatus.EXPIRED.value, "No longer in force: past its expiry date, or replaced (see replaced_by)"),
]
_API_STATUS = {ExemptionStatus.SUPERSEDED: ExemptionStatus.EXPIRED}


class TaxExemptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    jurisdiction = serializers.SerializerMethodField(help_text="Comma-separated, e.g. US-NY or US-NY,US-NJ.")
    jurisdictions = serializers.ListField(child=serializers.CharField())
    exemption_type = serializers.ChoiceField(choices=ExemptionType.choices)
    certificate_number = serializers.CharField()
    expires_on = serializers.DateField()
    decision_reason = serializers.CharField()
    submitted_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    replaced_by = serializers.IntegerField(
        source="replaced_by_id",
        allow_null=True,
        help_text="The id of the newer certificate that replaced this one (its status is then `expired`); else null.",
    )

    @extend_schema_field(serializers.ChoiceField(choices=EXEMPTION_API_STATUSES))
    def get_status(self, exemption) -> str:
        return str(_API_STATUS.get(exemption.status, exemption.status))

    def get_jurisdiction(self, exemption) -> str:
        return ",".join(exemption.jurisdictions or [])


class TaxExemptionListApi(ApiView):
    """Tax exemption certificates; POST uploads one (multipart) for review. Invoices are held until decided."""

    parser_classes = [MultiPartParser]

    class Input(StrictSerializer):
        # Missing or empty files are refused like any non-PDF (422 certificate_invalid), not by the parser: some
        # clients drop empty file parts, and the answer should not depend on that.
        certificate = serializers.FileField(
            max_length=200, allow_empty_file=True, required=False, help_text="PDF, PNG or JPEG, at most 5 MB."
        )
        jurisdiction = serializers.CharField(max_length=200, help_text="e.g. US-NY; several comma-separated.")
        certificate_number = serializers.CharField(max_length=80)
        expires_on = serializers.DateField()
        exemption_type = serializers.ChoiceField(choices=ExemptionType.choices, required=False, default="other")
        reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")

    @extend_schema(
        operation_id="tax_exemptions_list", responses={200: paginated(TaxExemptionSerializer, "TaxExemption")}
    )
    def get(self, request, customer_id):
        access = self.access(Action.TAX_VIEW)
        return self.paginate(
            billing_selectors.tax_exemption_list_for_customer(customer=access.customer), TaxExemptionSerializer
        )

    @extend_schema(
        operation_id="tax_exemption_submit",
        request={"multipart/form-data": Input},
        responses={201: TaxExemptionSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    @idempotent
    def post(self, request, customer_id):
        access = self.access(Action.TAX_SUBMIT)
        data = self.valid_input()
        values = data.validated_data
        certificate = values.get("certificate")
        if certificate is None:
            raise CertificateInvalid("Attach the certificate (a PDF, PNG or JPEG file).", field="certificate")
        exemption = tax_exemption_submit(
            customer=access.customer,
            jurisdictions=values["jurisdiction"],
            exemption_type=values["exemption_type"],
            certificate_number=values["certificate_number"],
            expires_on=values["expires_on"],
            certificate=certificate,
            reason=values["reason"],
            actor=self.principal().actor,
        )
        return Response(TaxExemptionSerializer(exemption).data, status=201)


class TaxExemptionDetailApi(ApiView):
    @extend_schema(operation_id="tax_exemption_retrieve", responses={200: TaxExemptionSerializer})
    def get(self, request, customer_id, exemption_id):
        access = self.access(Action.TAX_VIEW)
        exemption = billing_selectors.tax_exemption_get_for_customer(
            customer=access.customer, exemption_id=parse_id(exemption_id)
        )
        return Response(TaxExemptionSerializer(exemption).data)
