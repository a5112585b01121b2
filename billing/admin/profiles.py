"""Billing profiles: billing staff edit a customer's billing details through `billing_profile_update`."""

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from billing.admin.base import ReadOnlyAdmin
from billing.exceptions import BillingError
from billing.models import BillingProfile
from billing.services.profiles import EDITABLE_FIELDS as PROFILE_EDITABLE_FIELDS
from billing.services.profiles import billing_profile_update, billing_profile_validate, tax_id_normalize
from subscriptions import policy


class BillingProfileForm(forms.ModelForm):
    """The profile fields billing staff may edit; checked by the same rules as the portal and the API
    (`billing_profile_validate`, `tax_id_normalize`), so a problem comes back on its field and nothing is saved."""

    billing_emails = forms.CharField(
        required=False,
        max_length=2000,
        help_text="Where invoices are sent; separate several with commas.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    class Meta:
        model = BillingProfile
        fields = list(PROFILE_EDITABLE_FIELDS)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and not self.is_bound:
            self.initial["billing_emails"] = ", ".join(self.instance.billing_emails or [])

    def clean(self):
        cleaned = super().clean()
        data = {name: cleaned[name] for name in PROFILE_EDITABLE_FIELDS if name in cleaned}
        try:
            data = billing_profile_validate(data=data)
            if {"tax_id", "country"} & set(self.changed_data):  # as the service: only a changed ID is re-checked
                tax_id_normalize(tax_id=data.get("tax_id", ""), country=data.get("country", ""))
        except BillingError as error:
            field = error.field if error.field in self.fields else None
            self.add_error(field, error.message)
            return cleaned
        cleaned.update(data)
        return cleaned


@admin.register(BillingProfile)
class BillingProfileAdmin(ReadOnlyAdmin):
    """Billing staff (and superusers) edit a customer's billing details here; support agents read them. Saving goes
    through `billing_profile_update` (validated, tax ID normalised, audited with before/after, Stripe customer
    synced): the form never writes the row itself."""

    form = BillingProfileForm
    list_display = ["customer", "legal_name", "country", "region", "tax_id", "tax_id_valid", "requires_po"]
    list_filter = ["country", "requires_po", "change_billing_mode"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "legal_name", "tax_id"]
    readonly_fields = ["customer", "tax_id_valid", "updated_at"]
    fieldsets = [
        (None, {"fields": ["customer", "legal_name", "billing_emails"]}),
        ("Address", {"fields": ["address_line1", "address_line2", "city", "region", "postal_code", "country"]}),
        ("Tax", {"fields": ["tax_id", "tax_id_valid"]}),
        ("E-invoices", {"fields": ["e_invoicing", "buyer_reference"]}),
        (
            "Invoicing",
            {
                "fields": [
                    "currency",
                    "payment_terms_days",
                    "invoice_language",
                    "standing_po_number",
                    "requires_po",
                    "change_billing_mode",
                    "updated_at",
                ]
            },
        ),
    ]

    def has_change_permission(self, request, obj=None) -> bool:
        return policy.staff_allows(request.user, policy.Action.BILLING_EDIT, in_admin=True)

    def save_model(self, request, obj, form, change):
        changed = {name: form.cleaned_data[name] for name in form.changed_data if name in PROFILE_EDITABLE_FIELDS}
        # The audit row names the staff member; the service writes the row (and queues the Stripe customer sync).
        billing_profile_update(customer=obj.customer, actor=request.user, **changed)

    @admin.display(description="billing e-mails")
    def emails(self, profile) -> str:
        return format_html("{}", ", ".join(profile.billing_emails or []))
