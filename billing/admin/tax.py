"""Tax rates (billing staff manage them) and the review of tax exemption certificates (approve or reject)."""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse

from billing.admin.base import OwnPages, ReadOnlyAdmin, ReadOnlyInline
from billing.exceptions import BillingError
from billing.models import ExemptionStatus, ExemptionStatusChange, TaxExemption, TaxRate
from billing.services.exemptions import tax_exemption_approve, tax_exemption_reject
from subscriptions import policy
from subscriptions.admin import Button, run_button

INLINE_CERTIFICATE_TYPES = ("application/pdf", "image/png", "image/jpeg")
REVIEW = policy.Action.TAX_REVIEW


class ExemptionApproveForm(forms.Form):
    expires_on = forms.DateField(required=False, help_text="Correct the last valid day if the certificate differs.")
    note = forms.CharField(required=False, max_length=500)


class ExemptionRejectForm(forms.Form):
    reason = forms.CharField(max_length=1000, help_text="The customer sees this reason.")


def _approve(request, exemption: TaxExemption, data: dict) -> str:
    tax_exemption_approve(
        exemption_id=exemption.pk, reviewer=request.user, expires_on=data["expires_on"], note=data["note"]
    )
    return "Exemption approved; the customer's held and draft invoices were re-checked."


def _reject(request, exemption: TaxExemption, data: dict) -> str:
    tax_exemption_reject(exemption_id=exemption.pk, reviewer=request.user, reason=data["reason"])
    return "Exemption rejected; the customer sees your reason."


EXEMPTION_DECISIONS = {
    button.name: button
    for button in [
        Button(
            name="approve",
            form=ExemptionApproveForm,
            run=_approve,
            service="billing.services.exemptions.tax_exemption_approve",
            policy=REVIEW,
        ),
        Button(
            name="reject",
            form=ExemptionRejectForm,
            run=_reject,
            service="billing.services.exemptions.tax_exemption_reject",
            policy=REVIEW,
        ),
    ]
}


@admin.register(TaxRate)
class TaxRateAdmin(admin.ModelAdmin):
    """Billing staff manage rates; invoices copy rate and name when computed, so edits never alter issued ones."""

    list_display = ["name", "country", "region", "rate", "tax_categories", "effective_from", "effective_to"]
    list_filter = ["country"]
    search_fields = ["name", "country", "region"]

    def has_delete_permission(self, request, obj=None) -> bool:
        # End a rate with effective_to; deleting would lose which rate an old draft was computed with.
        return request.user.is_superuser


class ExemptionStatusChangeInline(ReadOnlyInline):
    model = ExemptionStatusChange
    fields = ["created_at", "from_status", "to_status", "actor", "reason"]
    readonly_fields = fields

    select_related = ("actor",)


@admin.register(TaxExemption)
class TaxExemptionAdmin(OwnPages, ReadOnlyAdmin):
    list_display = [
        "certificate_number",
        "customer",
        "exemption_type",
        "jurisdiction_list",
        "status",
        "expires_on",
        "submitted_at",
        "reviewer",
    ]
    list_filter = ["status", "exemption_type"]
    list_select_related = ["customer", "reviewer"]
    search_fields = ["certificate_number", "customer__name", "customer__legal_name"]
    exclude = ["certificate"]
    inlines = [ExemptionStatusChangeInline]
    change_form_template = "admin/billing/taxexemption/review.html"

    own_pages = (
        ("<int:exemption_id>/certificate/", "certificate_view", "billing_taxexemption_certificate"),
        ("<int:exemption_id>/decide/<slug:decision>/", "decide_view", "billing_taxexemption_decide"),
    )

    def decide_view(self, request, exemption_id: int, decision: str):
        """Approve (optionally correcting the expiry) or reject (with a reason the customer sees)."""
        return run_button(
            request,
            EXEMPTION_DECISIONS,
            decision,
            load=lambda: get_object_or_404(TaxExemption, pk=exemption_id),
            redirect_to=lambda exemption: reverse("admin:billing_taxexemption_change", args=[exemption.pk]),
            refused=(BillingError,),
        )

    def certificate_view(self, request, exemption_id: int):
        """The certificate file, only for those allowed to review exemptions (support agents are not)."""
        exemption = get_object_or_404(TaxExemption, pk=exemption_id)
        if not policy.staff_allows(request.user, policy.Action.TAX_VIEW, in_admin=True):
            raise PermissionDenied
        try:
            handle = exemption.certificate.open("rb")
        except (FileNotFoundError, ValueError):
            raise Http404("The certificate file is missing.")
        content_type = exemption.certificate_content_type
        inline = content_type in INLINE_CERTIFICATE_TYPES
        response = FileResponse(
            handle,
            content_type=content_type if inline else "application/octet-stream",
            as_attachment=not inline,
            filename=exemption.original_filename or f"certificate-{exemption.pk}",
        )
        # Shown in a frame on the review page only: our own pages may frame it, nothing may run inside it.
        response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; frame-ancestors 'self'"
        response["X-Frame-Options"] = "SAMEORIGIN"
        response["Cache-Control"] = "private, no-store"
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        exemption = self.get_object(request, object_id)
        extra_context = dict(extra_context or {})
        if exemption is not None:
            extra_context["exemption"] = exemption
            extra_context["certificate_is_image"] = exemption.certificate_content_type.startswith("image/")
            extra_context["certificate_inline"] = exemption.certificate_content_type in INLINE_CERTIFICATE_TYPES
            if exemption.status == ExemptionStatus.SUBMITTED and policy.staff_allows(
                request.user, REVIEW, in_admin=True
            ):
                extra_context["approve_form"] = ExemptionApproveForm(initial={"expires_on": exemption.expires_on})
                extra_context["reject_form"] = ExemptionRejectForm()
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="jurisdictions")
    def jurisdiction_list(self, exemption) -> str:
        return ", ".join(str(j) for j in exemption.jurisdictions or [])
