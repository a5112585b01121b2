"""Invoices: drafting, recomputing, the automatic pre-issue checks, issuing with gapless numbers, payments, voids.

State machine: billing.models.INVOICE_TRANSITIONS is the one table; `invoice_transition` is the one place that
changes an invoice's status (row locked, table checked, InvoiceStatusChange + audit row written, side effects on
commit).

One module per use case, bottom up (each imports only the ones before it, checked by import-linter): `state`,
`drafts`, `checks`, `numbering`, `issue`, `settlement`, `rebill`. Everything public is re-exported here, so
`from billing.services.invoices import ...` keeps working.
"""

from billing.services.invoices.checks import (
    AMOUNT_CHANGE_THRESHOLD,
    BLOCKING_HOLDS,
    CheckInputs,
    invoice_checks_run,
)
from billing.services.invoices.drafts import (
    DraftLine,
    apply_tax_result,
    invoice_draft_create,
    invoice_line_add,
    invoice_line_remove,
    invoice_line_update,
    invoice_recompute,
    line_fields,
)
from billing.services.invoices.issue import (
    invoice_approve_and_issue,
    invoice_finalize,
    invoice_issue,
    invoice_set_po_number,
    invoices_after_issue_queue,
    invoices_finalize_batch,
    invoices_recheck_for_customer,
)
from billing.services.invoices.numbering import (
    number_allocate,
)
from billing.services.invoices.rebill import (
    invoice_void_and_rebill,
)
from billing.services.invoices.settlement import (
    correction_reason_check,
    invoice_apply_payment,
    invoice_mark_uncollectible,
    invoice_void,
)
from billing.services.invoices.state import (
    invoice_lock,
    invoice_transition,
)

__all__ = [
    "AMOUNT_CHANGE_THRESHOLD",
    "BLOCKING_HOLDS",
    "CheckInputs",
    "DraftLine",
    "apply_tax_result",
    "correction_reason_check",
    "invoice_apply_payment",
    "invoice_approve_and_issue",
    "invoice_checks_run",
    "invoice_draft_create",
    "invoice_finalize",
    "invoice_issue",
    "invoice_line_add",
    "invoice_line_remove",
    "invoice_line_update",
    "invoice_lock",
    "invoice_mark_uncollectible",
    "invoice_recompute",
    "invoice_set_po_number",
    "invoice_transition",
    "invoice_void",
    "invoice_void_and_rebill",
    "invoices_after_issue_queue",
    "invoices_finalize_batch",
    "invoices_recheck_for_customer",
    "line_fields",
    "number_allocate",
]
