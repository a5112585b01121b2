"""Issuing: one invoice (`invoice_issue`, `invoice_finalize`, `invoice_approve_and_issue`) or a chunk
(`invoices_finalize_batch`, which shares the single path's checks, numbering and status rows), and the
after-issue task queued on commit.
"""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.exceptions import (
    InvalidTransition,
    InvoiceNotIssuable,
)
from billing.models import (
    EDITABLE_STATUSES,
    BillingProfile,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceStatusChange,
    InvoiceTaxLine,
)
from billing.services.events import invoice_status_event
from billing.services.invoices.checks import BLOCKING_HOLDS, CheckInputs, _checks_evaluate
from billing.services.invoices.drafts import (
    _edit,
    _recompute,
    _tax_date,
    apply_tax_result,
    invoice_recompute,
)
from billing.services.invoices.numbering import _sequence_locked, _series, _set_issued, number_allocate
from billing.services.invoices.state import _transition_rows, invoice_lock, invoice_transition
from billing.services.tax import TaxData, tax_compute
from subscriptions import bulk
from subscriptions.dispatch import enqueue_on_commit, send_now
from subscriptions.models import (
    ActorKind,
    AuditEvent,
    User,
)
from subscriptions.services.audit import audit_record
from subscriptions.services.events import events_record_many


def _issue_locked(invoice: Invoice, *, actor: User | None, reason: str) -> None:
    """Recompute, refuse on a blocking check, issue (staff issue and approve-and-issue)."""
    profile, lines = _recompute(invoice)
    inputs = CheckInputs([invoice], profiles={invoice.customer_id: profile}, lines={invoice.pk: lines})
    blocking = [r for r in _checks_evaluate(invoice, inputs) if r["code"] in BLOCKING_HOLDS]
    if blocking:
        invoice.hold_reasons = blocking
        if invoice.status == InvoiceStatus.DRAFT:
            invoice_transition(
                invoice, InvoiceStatus.HELD, actor=actor, reason="; ".join(r["message"] for r in blocking)
            )
        invoice.save()
        raise InvoiceNotIssuable(" ".join(r["message"] for r in blocking))
    _issue_checked(invoice, actor=actor, reason=reason, profile=profile)


def _issue_checked(invoice: Invoice, *, actor: User | None, reason: str, profile: BillingProfile | None) -> None:
    """Issue a LOCKED, just recomputed and checked invoice: number, open (paid when nothing is due), after commit
    the PDF/e-mail/collection task."""
    now = timezone.now()
    series = _series(getattr(settings, "INVOICE_NUMBER_PREFIX", "INV"), now)
    _set_issued(invoice, now=now, series=series, value=number_allocate(series=series), profile=profile)
    invoice_transition(invoice, InvoiceStatus.OPEN, actor=actor, reason=reason)
    if invoice.amount_due_minor == 0:
        invoice.paid_at = now
        invoice_transition(invoice, InvoiceStatus.PAID, actor=actor, reason="Nothing to pay.")
    invoice.save()
    invoice_id = invoice.pk
    transaction.on_commit(lambda: _after_issue(invoice_id))


def _after_issue(invoice_id: int) -> None:
    enqueue_on_commit("billing.invoice_after_issue", invoice_id=invoice_id)


def _after_issue_many(invoice_ids: list[int]) -> None:
    """The after-issue tasks of a chunk's invoices, from one after-commit callback: ONE message
    (`billing.invoices_after_issue_fan_out`), whose worker queues each invoice's task (`invoices_after_issue_queue`).
    Publishing a Celery message costs ~1 ms; one per invoice was half of the set-based finalize's time, spent in the
    billing run's own process. The per-invoice tasks are unchanged (own retries, idempotent), and an invoice whose
    hand-off is lost either way is caught by the delivery sweep (billing/services/delivery_sweep.py)."""
    if len(invoice_ids) == 1:
        _after_issue(invoice_ids[0])
    elif invoice_ids:
        enqueue_on_commit("billing.invoices_after_issue_fan_out", invoice_ids=list(invoice_ids))


def invoices_after_issue_queue(*, invoice_ids: list[int]) -> int:
    """Queue the after-issue task (PDF, e-mail, collection) of each of `invoice_ids` now, one message each, as
    `invoice_issue` does after commit; what the fan-out task runs. Returns how many the broker took."""
    return sum(send_now("billing.invoice_after_issue", invoice_id=invoice_id) for invoice_id in invoice_ids)


def invoice_issue(*, invoice_id: int, actor: User | None = None, reason: str = "") -> Invoice:
    """Issue a draft/held invoice: recompute, assign the next gapless number of its year's series, set the due date,
    open it (or mark it paid when nothing is due). Refuses while a blocking check fails (pending exemption, missing
    tax location, negative total). After commit: PDF render, "invoice issued" e-mail, payment collection.

    Locks the invoice and the sequence row; idempotent in effect (an issued invoice raises InvalidTransition).
    """
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if invoice.status not in EDITABLE_STATUSES:
            raise InvalidTransition(f"Invoice {invoice.number or invoice.pk} is already {invoice.status}.")
        _issue_locked(invoice, actor=actor, reason=reason)
    return invoice


def invoice_finalize(*, invoice_id: int, actor: User | None = None) -> Invoice:
    """Run the pre-issue checks on a draft/held invoice: issue it if all pass, else hold it with its reasons.

    Recomputes and checks once (the checks reuse the profile and lines the recompute loaded). Safe to call
    repeatedly (e.g. after every exemption decision or PO edit); issued invoices are left untouched. The billing
    run finalizes whole chunks with `invoices_finalize_batch`, which gives the same result.
    """
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if invoice.status not in EDITABLE_STATUSES:
            return invoice
        profile, lines = _recompute(invoice)
        inputs = CheckInputs([invoice], profiles={invoice.customer_id: profile}, lines={invoice.pk: lines})
        reasons = _checks_evaluate(invoice, inputs)
        invoice.checks_run_at = timezone.now()
        if reasons:
            changed = reasons != invoice.hold_reasons
            invoice.hold_reasons = reasons
            if invoice.status == InvoiceStatus.DRAFT:
                invoice_transition(
                    invoice, InvoiceStatus.HELD, actor=actor, reason="; ".join(r["message"] for r in reasons)
                )
            elif changed:
                audit_record(
                    customer=invoice.customer,
                    actor=actor,
                    action="invoice.hold_reasons_changed",
                    obj=invoice,
                    summary=f"Invoice #{invoice.pk} still held: {', '.join(r['code'] for r in reasons)}",
                    after={"hold_reasons": reasons},
                )
            invoice.save()
            return invoice
        invoice.hold_reasons = []
        _issue_checked(invoice, actor=actor, reason="All pre-issue checks passed.", profile=profile)
    return invoice


# Every column invoices_finalize_batch may change: what apply_tax_result copies, then the check and issue fields.
_FINALIZE_FIELDS = (
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "amount_due_minor",
    "exemption",
    "exemption_reference",
    "exemption_wording",
    "reverse_charge",
    "reverse_charge_wording",
    "billing_legal_name",
    "billing_address",
    "billing_country",
    "billing_region",
    "billing_emails",
    "customer_tax_ids",
    "po_number",
    "seller_details",
    "e_invoice",
    "buyer_details",
    "status",
    "hold_reasons",
    "checks_run_at",
    "series",
    "number",
    "issued_at",
    "due_on",
    "paid_at",
)


def invoices_finalize_batch(*, invoice_ids: list[int]) -> tuple[list[int], list[int]]:
    """Finalize the DRAFTS among `invoice_ids` as `invoice_finalize` does one by one, in one transaction and a
    constant number of queries: recompute tax and copied details, run the checks (`CheckInputs` for the whole
    chunk), hold the failing drafts with their reasons, issue the others with consecutive numbers of the series in
    id order — under the same sequence-row lock as the single path, so numbers stay gapless and unique
    when several workers and staff issue at once. Status-change and audit rows are the single path's; after commit
    each issued invoice queues its after-issue task (PDF, e-mail, collection), once.

    Locks the drafts (id order), then the sequence row. Idempotent: invoices no longer drafts are skipped, so a
    repeated or concurrent call on the same ids does nothing twice. Returns (issued ids, held ids).
    """
    with transaction.atomic():
        invoices = list(
            Invoice.objects.select_for_update(of=("self",))
            .select_related("customer")
            .filter(pk__in=invoice_ids, status=InvoiceStatus.DRAFT)
            .order_by("pk")
        )
        if not invoices:
            return [], []
        # Recompute (as _recompute does per invoice).
        tax_data = TaxData({invoice.customer_id for invoice in invoices})
        lines_by_invoice: dict[int, list[InvoiceLine]] = {}
        for line in InvoiceLine.objects.filter(invoice_id__in=[invoice.pk for invoice in invoices]):
            lines_by_invoice.setdefault(line.invoice_id, []).append(line)
        changed_lines, tax_rows = [], []
        for invoice in invoices:
            lines = lines_by_invoice.get(invoice.pk, [])
            context = tax_data.context(invoice.customer_id, _tax_date(invoice))
            result = tax_compute(lines=[(line.amount_minor, line.tax_category) for line in lines], context=context)
            before = {line.pk: (line.tax_rate, line.tax_name) for line in lines}
            tax_rows += apply_tax_result(
                invoice=invoice, lines=lines, result=result, profile=tax_data.profiles.get(invoice.customer_id)
            )
            changed_lines += [line for line in lines if before[line.pk] != (line.tax_rate, line.tax_name)]
        bulk.bulk_update(InvoiceLine, changed_lines, ["tax_rate", "tax_name"])
        InvoiceTaxLine.objects.filter(invoice_id__in=[invoice.pk for invoice in invoices]).delete()
        bulk.bulk_insert(InvoiceTaxLine, tax_rows)

        # Check and issue in id order, numbering as we go (an invoice issued here counts for the later ones, and
        # its number appears in their messages, exactly as one by one). Everything is in memory by now, so the
        # sequence row — the same lock the single path takes — is held only for this loop and the writes below.
        inputs = CheckInputs(invoices, profiles=tax_data.profiles, lines=lines_by_invoice)
        now = timezone.now()
        series = _series(getattr(settings, "INVOICE_NUMBER_PREFIX", "INV"), now)
        sequence = _sequence_locked(series)
        to_issue, held = [], []
        status_rows, audit_rows, event_drafts = [], [], []

        def transition(invoice: Invoice, to_status: str, reason: str) -> None:
            change, audit = _transition_rows(invoice, to_status, actor=None, reason=reason)
            status_rows.append(change)
            audit_rows.append(
                AuditEvent(customer_id=invoice.customer_id, actor=None, actor_kind=ActorKind.SYSTEM, **audit)
            )
            event_drafts.append(invoice_status_event(invoice))  # snapshot now: open, then paid, are two events

        for invoice in invoices:
            reasons = _checks_evaluate(invoice, inputs)
            invoice.checks_run_at = now
            invoice.hold_reasons = reasons
            if reasons:
                held.append(invoice)
                transition(invoice, InvoiceStatus.HELD, "; ".join(r["message"] for r in reasons))
                continue
            sequence.last_value += 1
            profile = inputs.profiles.get(invoice.customer_id)
            _set_issued(invoice, now=now, series=series, value=sequence.last_value, profile=profile)
            transition(invoice, InvoiceStatus.OPEN, "All pre-issue checks passed.")
            if invoice.amount_due_minor == 0:
                invoice.paid_at = now
                transition(invoice, InvoiceStatus.PAID, "Nothing to pay.")
            to_issue.append(invoice)
            inputs.record_issued(invoice)
        if to_issue:
            sequence.save(update_fields=["last_value", "updated_at"])
        bulk.bulk_update(Invoice, invoices, _FINALIZE_FIELDS)
        bulk.bulk_insert(InvoiceStatusChange, status_rows)
        bulk.bulk_insert(AuditEvent, audit_rows)
        events_record_many(draft for draft in event_drafts if draft is not None)
        if to_issue:
            issued_ids = [invoice.pk for invoice in to_issue]
            transaction.on_commit(lambda: _after_issue_many(issued_ids))
    return [invoice.pk for invoice in to_issue], [invoice.pk for invoice in held]


def invoice_approve_and_issue(*, invoice_id: int, actor: User, note: str = "") -> Invoice:
    """Billing staff approve a held invoice despite its (non-blocking) hold reasons and issue it.

    Blocking reasons (pending exemption, missing tax location, negative total) cannot be overridden: fix the cause.
    """
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if invoice.status not in EDITABLE_STATUSES:
            raise InvalidTransition(f"Invoice {invoice.number or invoice.pk} is already {invoice.status}.")
        overridden = ", ".join(r["code"] for r in invoice.hold_reasons) or "none"
        invoice.approved_by = actor
        _issue_locked(invoice, actor=actor, reason=f"Approved by staff (holds: {overridden}). {note}".strip())
        # The customer's other held invoices may have waited for this one (e.g. "first invoice of a new customer").
        customer_id = invoice.customer_id
        transaction.on_commit(lambda: invoices_recheck_for_customer(customer_id=customer_id))
    return invoice


def invoices_recheck_for_customer(*, customer_id: int, actor: User | None = None) -> list[Invoice]:
    """Recompute every draft/held invoice of a customer (tax, copied details) and re-run the checks on the held ones;
    those that now pass are issued. Drafts are only recomputed: a draft is being edited by staff or is about to be
    finalized by the billing run, and is never issued behind its editor's back."""
    results = []
    ids = list(
        Invoice.objects.filter(customer_id=customer_id, status__in=EDITABLE_STATUSES)
        .order_by("id")
        .values_list("id", "status")
    )
    for invoice_id, status in ids:
        if status == InvoiceStatus.HELD:
            results.append(invoice_finalize(invoice_id=invoice_id, actor=actor))
        else:
            results.append(invoice_recompute(invoice_id=invoice_id))
    return results


def invoice_set_po_number(*, invoice_id: int, po_number: str, actor: User | None = None) -> Invoice:
    """Set the per-invoice PO number on a draft/held invoice, then re-run the checks (it may now be issued)."""
    po_number = (po_number or "").strip()
    with transaction.atomic():
        invoice = _edit(invoice_id, None)
        before = invoice.po_number
        invoice.po_number = po_number[:60]
        invoice.version += 1
        invoice.save()
        audit_record(
            customer=invoice.customer,
            actor=actor,
            action="invoice.po_set",
            obj=invoice,
            summary=f"PO number {po_number or '(none)'} set on invoice #{invoice.pk}",
            before={"po_number": before},
            after={"po_number": po_number},
        )
    return invoice_finalize(invoice_id=invoice_id, actor=actor)
