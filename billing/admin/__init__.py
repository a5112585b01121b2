"""Billing back office, one module per model family: `invoices` (the held-invoice review queue and review page, whose
buttons are `invoice_actions`), `credit_notes` (and their refunds), `payments` (payments, Stripe customers, payment
methods, dunning cases, Stripe events), `tax` (tax rates, exemption review), `profiles` (billing profiles),
`discounts` (coupons, promotion codes, redemptions), `exports` (accounting exports); `base` holds what they share.

No money or status field is editable here, for anyone: every state change is an action that calls a billing
service (which locks the row, checks the transition table and audits); `ADMIN_ACTIONS` lists them all. Issued
invoices and credit notes are read-only. Permissions come from portal/migrations/0002_billing_groups.py.
"""

from billing.admin import credit_notes, discounts, exports, invoice_actions, invoices, payments, profiles, tax
from billing.admin.base import (
    AmountField,
    ReadOnlyAdmin,
    ReadOnlyInline,
    einvoice_validation_summary,
    money,
    to_minor,
)
from billing.admin.credit_notes import REFUND_ACTIONS, CreditNoteAdmin, RefundTransferForm
from billing.admin.discounts import AttachForm, CouponAdmin, DiscountAdmin, PromotionCodeAdmin
from billing.admin.exports import ExportForm
from billing.admin.invoice_actions import (
    INVOICE_ACTIONS,
    ApproveForm,
    CreditNoteForm,
    InvoiceAction,
    LineForm,
    LineRemoveForm,
    MarkPaidForm,
    VoidForm,
    WriteOffForm,
    invoice_actions_for,
)
from billing.admin.invoices import InvoiceAdmin, invoice_review_context
from billing.admin.payments import PaymentAdmin, StripeEventAdmin
from billing.admin.profiles import BillingProfileAdmin, BillingProfileForm
from billing.admin.tax import (
    EXEMPTION_DECISIONS,
    ExemptionApproveForm,
    ExemptionRejectForm,
    TaxExemptionAdmin,
    TaxRateAdmin,
)
from subscriptions import policy
from subscriptions.admin import AdminAction, button_rows

# (model, action, form, service, policy action or model permission): tests/admin/test_action_table.py holds it
# against the registered admins, docs/backoffice.md lists it. The buttons' rows come from the tables their views
# dispatch through, so a button cannot exist without its row.
ADMIN_ACTIONS: tuple[AdminAction, ...] = (
    AdminAction(
        "billing.invoice",
        "approve_and_issue_selected",
        None,
        "billing.services.invoices.invoice_approve_and_issue",
        policy.Action.INVOICES_REVIEW,
    ),
    *button_rows("billing.invoice", "billing_invoice_action", INVOICE_ACTIONS.values()),
    *button_rows("billing.creditnote", "billing_creditnote_refund", REFUND_ACTIONS.values()),
    *button_rows("billing.taxexemption", "billing_taxexemption_decide", EXEMPTION_DECISIONS.values()),
    AdminAction(
        "billing.taxexemption",
        "billing_taxexemption_certificate",
        None,
        None,  # streams the certificate file; writes nothing
        policy.Action.TAX_VIEW,
    ),
    AdminAction(
        "billing.billingprofile",
        "save_model",
        BillingProfileForm,
        "billing.services.profiles.billing_profile_update",
        policy.Action.BILLING_EDIT,
    ),
    AdminAction(
        "billing.stripeevent",
        "retry_selected",
        None,
        "billing.services.stripe_events.stripe_event_retry",
        policy.Action.STRIPE_EVENTS_RETRY,
    ),
    AdminAction(
        "billing.discount",
        "billing_discount_attach",
        AttachForm,
        "billing.services.discounts.discount_redeem",
        policy.Action.DISCOUNTS_ATTACH,
    ),
    AdminAction(
        "billing.discount",
        "end_at_period_end",
        None,
        "billing.services.discounts.discount_end",
        policy.Action.DISCOUNTS_ATTACH,
    ),
    AdminAction(
        "billing.accountingexport",
        "add_view",
        ExportForm,
        "billing.services.exports.accounting_export_request",
        policy.Action.EXPORTS_RUN,
    ),
    AdminAction(
        "billing.accountingexport",
        "billing_accountingexport_download",
        None,
        "billing.services.exports.accounting_export_downloaded",
        policy.Action.EXPORTS_RUN,
    ),
)

__all__ = [
    "ADMIN_ACTIONS",
    "EXEMPTION_DECISIONS",
    "INVOICE_ACTIONS",
    "REFUND_ACTIONS",
    "AmountField",
    "ApproveForm",
    "AttachForm",
    "BillingProfileAdmin",
    "BillingProfileForm",
    "CouponAdmin",
    "CreditNoteAdmin",
    "CreditNoteForm",
    "DiscountAdmin",
    "ExemptionApproveForm",
    "ExemptionRejectForm",
    "ExportForm",
    "InvoiceAction",
    "InvoiceAdmin",
    "LineForm",
    "LineRemoveForm",
    "MarkPaidForm",
    "PaymentAdmin",
    "PromotionCodeAdmin",
    "ReadOnlyAdmin",
    "ReadOnlyInline",
    "RefundTransferForm",
    "StripeEventAdmin",
    "TaxExemptionAdmin",
    "TaxRateAdmin",
    "VoidForm",
    "WriteOffForm",
    "credit_notes",
    "discounts",
    "einvoice_validation_summary",
    "exports",
    "invoice_actions",
    "invoice_actions_for",
    "invoice_review_context",
    "invoices",
    "money",
    "payments",
    "profiles",
    "tax",
    "to_minor",
]
