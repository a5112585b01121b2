"""Billing models, one module per area; import each here so Django finds them."""

from billing.models.credit_notes import CreditNote, CreditNoteLine
from billing.models.invoices import (
    EDITABLE_STATUSES,
    INVOICE_TRANSITIONS,
    ISSUED_STATUSES,
    CorrectionReason,
    HoldReason,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoiceStatus,
    InvoiceStatusChange,
    InvoiceTaxLine,
    LineKind,
    PendingInvoiceItem,
)
from billing.models.profiles import BillingProfile, ChangeBillingMode
from billing.models.tax import (
    EXEMPTION_TRANSITIONS,
    ExemptionStatus,
    ExemptionStatusChange,
    ExemptionType,
    TaxExemption,
    TaxRate,
)

__all__ = [
    "EDITABLE_STATUSES",
    "EXEMPTION_TRANSITIONS",
    "INVOICE_TRANSITIONS",
    "ISSUED_STATUSES",
    "BillingProfile",
    "ChangeBillingMode",
    "CorrectionReason",
    "CreditNote",
    "CreditNoteLine",
    "ExemptionStatus",
    "ExemptionStatusChange",
    "ExemptionType",
    "HoldReason",
    "Invoice",
    "InvoiceKind",
    "InvoiceLine",
    "InvoiceNumberSequence",
    "InvoiceStatus",
    "InvoiceStatusChange",
    "InvoiceTaxLine",
    "LineKind",
    "PendingInvoiceItem",
    "TaxExemption",
    "TaxRate",
]
