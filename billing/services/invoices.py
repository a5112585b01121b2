"""Invoices: drafting, recomputing, the automatic pre-issue checks, issuing with gapless numbers, payments, voids.

State machine: billing.models.INVOICE_TRANSITIONS is the one table; `_transition` is the one place that changes an
invoice's status (row locked, table checked, InvoiceStatusChange + audit row written, side effects on commit).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing.exceptions import (
    CurrencyMismatch,
    InvalidTransition,
    InvoiceImmutable,
    InvoiceNotIssuable,
    NotFound,
    PaymentInvalid,
    ReasonCodeInvalid,
    StaleVersion,
)
from billing.models import (
    EDITABLE_STATUSES,
    INVOICE_TRANSITIONS,
    BillingProfile,
    CorrectionReason,
    ExemptionStatus,
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
    TaxExemption,
)
from billing.money import format_money
from billing.services.profiles import billing_address_problems
from billing.services.tax import TaxResult, tax_compute, tax_context_for
from subscriptions.models import Customer, SeatLedgerEntry, Subscription, SubscriptionChange, User
from subscriptions.services.audit import audit_occurred_at, audit_record

AMOUNT_CHANGE_THRESHOLD = Decimal("0.25")
# Checks staff cannot override with "approve and issue": they would issue a wrong or unaddressable invoice.
BLOCKING_HOLDS = frozenset({HoldReason.EXEMPTION_PENDING, HoldReason.TAX_LOCATION_MISSING, HoldReason.NEGATIVE_TOTAL})


@dataclass(frozen=True)
class DraftLine:
    """A line to put on a draft invoice (amount = quantity × unit unless given, e.g. for proration)."""

    description: str
    unit_amount_minor: int
    quantity: int = 1
    amount_minor: int | None = None
    kind: str = LineKind.MANUAL
    sku_code: str = ""
    tax_category: str = "saas"
    period_start: datetime | None = None
    period_end: datetime | None = None
    is_proration: bool = False
    subscription_change_id: int | None = None

    @property
    def amount(self) -> int:
        return self.amount_minor if self.amount_minor is not None else self.quantity * self.unit_amount_minor


# --- internals ------------------------------------------------------------------------------------------------------


def _lock(invoice_id: int) -> Invoice:
    try:
        return Invoice.objects.select_for_update().select_related("customer").get(pk=invoice_id)
    except Invoice.DoesNotExist:
        raise NotFound("That invoice does not exist.")


def _assert_editable(invoice: Invoice) -> None:
    if invoice.status not in EDITABLE_STATUSES:
        raise InvoiceImmutable(
            f"Invoice {invoice.number or invoice.pk} is {invoice.get_status_display().lower()} and cannot change; "
            "issue a credit note instead."
        )


def _transition(invoice: Invoice, to_status: str, *, actor: User | None = None, reason: str = "") -> None:
    """Move a LOCKED invoice to `to_status` per INVOICE_TRANSITIONS; write the status-change and audit rows."""
    from_status = invoice.status
    if to_status not in INVOICE_TRANSITIONS.get(from_status, frozenset()):
        raise InvalidTransition(
            f"An invoice that is {InvoiceStatus(from_status).label.lower()} cannot become "
            f"{InvoiceStatus(to_status).label.lower()}."
        )
    invoice.status = to_status
    InvoiceStatusChange.objects.create(
        invoice=invoice, from_status=from_status, to_status=to_status, actor=actor, reason=reason[:2000]
    )
    audit_record(
        customer=invoice.customer,
        actor=actor,
        action=f"invoice.{to_status}",
        obj=invoice,
        summary=f"Invoice {invoice.number or '#' + str(invoice.pk)}: {InvoiceStatus(to_status).label.lower()}",
        before={"status": from_status},
        after={"status": to_status},
        reason=reason,
    )


def _profile(customer_id: int) -> BillingProfile | None:
    return BillingProfile.objects.filter(customer_id=customer_id).first()


def _tax_date(invoice: Invoice):
    return (invoice.period_start or invoice.created_at or timezone.now()).date()


def apply_tax_result(
    *, invoice: Invoice, lines: list[InvoiceLine], result: TaxResult, profile: BillingProfile | None
) -> list[InvoiceTaxLine]:
    """Set totals, copied billing details and per-line rates on `invoice`/`lines` (unsaved); return tax-line rows.

    Shared by the one-invoice path (_recompute) and the billing run's bulk drafting so both compute identically.
    """
    context = result.context
    for line, (rate, name) in zip(lines, result.line_rates, strict=True):
        line.tax_rate, line.tax_name = rate, name
    invoice.subtotal_minor = result.subtotal_minor
    invoice.tax_minor = result.tax_minor
    invoice.total_minor = result.total_minor
    invoice.amount_due_minor = max(0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor)
    invoice.exemption = context.exemption
    invoice.exemption_reference = context.exemption.certificate_number if context.exemption else ""
    invoice.exemption_wording = context.exemption_wording
    invoice.reverse_charge = context.reverse_charge
    invoice.reverse_charge_wording = context.reverse_charge_wording
    customer = invoice.customer
    if profile is not None:
        invoice.billing_legal_name = profile.legal_name or customer.legal_name or customer.name
        invoice.billing_address = profile.address_lines
        invoice.billing_country = profile.country
        invoice.billing_region = profile.region
        invoice.billing_emails = list(profile.billing_emails or [])
        invoice.customer_tax_ids = [profile.tax_id] if profile.tax_id else []
        if not invoice.po_number and profile.standing_po_number:
            invoice.po_number = profile.standing_po_number
    else:
        invoice.billing_legal_name = customer.legal_name or customer.name
    invoice.seller_details = dict(settings.SELLER)
    return [
        InvoiceTaxLine(
            invoice=invoice if invoice.pk else None,
            tax_rate_id=entry.tax_rate_id,
            name=entry.name,
            jurisdiction=entry.jurisdiction,
            rate=entry.rate,
            taxable_amount_minor=entry.taxable_minor,
            tax_amount_minor=entry.tax_minor,
        )
        for entry in result.tax_lines
    ]


def _recompute(invoice: Invoice) -> None:
    """Recompute tax lines and totals of an EDITABLE invoice and copy the billing details it will print.

    Called on every draft change and again at issue, so an issued invoice carries the details and rates of its issue.
    """
    _assert_editable(invoice)
    profile = _profile(invoice.customer_id)
    lines = list(invoice.lines.all())
    context = tax_context_for(customer_id=invoice.customer_id, profile=profile, tax_date=_tax_date(invoice))
    result = tax_compute(lines=[(line.amount_minor, line.tax_category) for line in lines], context=context)
    before = {line.pk: (line.tax_rate, line.tax_name) for line in lines}
    tax_lines = apply_tax_result(invoice=invoice, lines=lines, result=result, profile=profile)
    for line in lines:
        if before[line.pk] != (line.tax_rate, line.tax_name):
            line.save(update_fields=["tax_rate", "tax_name"])
    invoice.tax_lines.all().delete()
    InvoiceTaxLine.objects.bulk_create(tax_lines)
    invoice.save()


def _add_lines(invoice: Invoice, lines: list[DraftLine], start_position: int = 0) -> None:
    InvoiceLine.objects.bulk_create(
        InvoiceLine(
            invoice=invoice,
            position=start_position + index,
            kind=line.kind,
            description=line.description[:300],
            sku_code=line.sku_code,
            period_start=line.period_start,
            period_end=line.period_end,
            quantity=line.quantity,
            unit_amount_minor=line.unit_amount_minor,
            amount_minor=line.amount,
            is_proration=line.is_proration,
            tax_category=line.tax_category,
            subscription_change_id=line.subscription_change_id,
        )
        for index, line in enumerate(lines)
    )


# --- drafting and editing -------------------------------------------------------------------------------------------


def invoice_draft_create(
    *,
    customer: Customer,
    currency: str,
    lines: list[DraftLine],
    subscription: Subscription | None = None,
    kind: str = InvoiceKind.MANUAL,
    period_start: datetime | None = None,
    period_end: datetime | None = None,
    billed_seats: int | None = None,
    subscription_change: SubscriptionChange | None = None,
    po_number: str = "",
    actor: User | None = None,
) -> Invoice:
    """Create a draft invoice with `lines`, tax computed. Does not run the checks or issue (see invoice_finalize)."""
    with transaction.atomic():
        invoice = Invoice.objects.create(
            customer=customer,
            subscription=subscription,
            kind=kind,
            currency=currency,
            period_start=period_start,
            period_end=period_end,
            billed_seats=billed_seats,
            subscription_change=subscription_change,
            po_number=po_number,
        )
        _add_lines(invoice, lines)
        _recompute(invoice)
        InvoiceStatusChange.objects.create(invoice=invoice, from_status="", to_status=InvoiceStatus.DRAFT, actor=actor)
    return invoice


def _edit(invoice_id: int, expected_version: int | None) -> Invoice:
    invoice = _lock(invoice_id)
    _assert_editable(invoice)
    if expected_version is not None and invoice.version != expected_version:
        raise StaleVersion("This invoice changed since you opened it; reload and try again.")
    return invoice


def invoice_line_add(
    *, invoice_id: int, line: DraftLine, actor: User | None = None, expected_version: int | None = None
) -> InvoiceLine:
    """Add a line to a draft/held invoice (staff edit); recomputes tax; raises InvoiceImmutable once issued."""
    with transaction.atomic():
        invoice = _edit(invoice_id, expected_version)
        position = (invoice.lines.order_by("-position").values_list("position", flat=True).first() or 0) + 1
        _add_lines(invoice, [line], start_position=position)
        invoice.version += 1
        _recompute(invoice)
        audit_record(
            customer=invoice.customer,
            actor=actor,
            action="invoice.line_added",
            obj=invoice,
            summary=f"Line added to draft invoice #{invoice.pk}: {line.description}",
            after={"description": line.description, "amount_minor": line.amount},
        )
    return invoice.lines.order_by("-position", "-id").first()


def invoice_line_update(
    *,
    line_id: int,
    actor: User | None = None,
    expected_version: int | None = None,
    description: str | None = None,
    quantity: int | None = None,
    unit_amount_minor: int | None = None,
    amount_minor: int | None = None,
) -> InvoiceLine:
    """Edit a line of a draft/held invoice; recomputes tax; raises InvoiceImmutable once issued."""
    with transaction.atomic():
        line = InvoiceLine.objects.select_related("invoice").get(pk=line_id)
        invoice = _edit(line.invoice_id, expected_version)
        before = {"description": line.description, "quantity": line.quantity, "amount_minor": line.amount_minor}
        if description is not None:
            line.description = description[:300]
        if quantity is not None:
            line.quantity = int(quantity)
        if unit_amount_minor is not None:
            line.unit_amount_minor = int(unit_amount_minor)
        if amount_minor is not None:
            line.amount_minor = int(amount_minor)
        elif quantity is not None or unit_amount_minor is not None:
            line.amount_minor = line.quantity * line.unit_amount_minor
        line.save()
        invoice.version += 1
        _recompute(invoice)
        audit_record(
            customer=invoice.customer,
            actor=actor,
            action="invoice.line_updated",
            obj=invoice,
            summary=f"Line edited on draft invoice #{invoice.pk}: {line.description}",
            before=before,
            after={"description": line.description, "quantity": line.quantity, "amount_minor": line.amount_minor},
        )
    return line


def invoice_line_remove(*, line_id: int, actor: User | None = None, expected_version: int | None = None) -> None:
    with transaction.atomic():
        line = InvoiceLine.objects.get(pk=line_id)
        invoice = _edit(line.invoice_id, expected_version)
        line.delete()
        invoice.version += 1
        _recompute(invoice)
        audit_record(
            customer=invoice.customer,
            actor=actor,
            action="invoice.line_removed",
            obj=invoice,
            summary=f"Line removed from draft invoice #{invoice.pk}: {line.description}",
            before={"description": line.description, "amount_minor": line.amount_minor},
        )


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


def invoice_recompute(*, invoice_id: int) -> Invoice:
    """Recompute tax and copied details of a draft/held invoice (e.g. after an exemption decision)."""
    with transaction.atomic():
        invoice = _lock(invoice_id)
        _recompute(invoice)
    return invoice


# --- the pre-issue checks -------------------------------------------------------------------------------------------


def _seat_count_at(subscription_id: int, at: datetime) -> int | None:
    """Seats in force at `at` per the seat ledger (the append-only record of purchased seats)."""
    entry = (
        SeatLedgerEntry.objects.filter(subscription_id=subscription_id, effective_at__lte=at)
        .order_by("-effective_at", "-id")
        .first()
    )
    return entry.seats_to if entry else None


def provisioned_seats(*, subscription: Subscription, at: datetime) -> int | None:
    """Seats actually provisioned for `subscription` at `at`.

    Prefers the provisioning work's applied entitlements (issue 5) when that module offers
    `subscriptions.selectors.entitlement_seats_applied(subscription=..., at=...)`; otherwise the seat ledger.
    """
    try:
        from subscriptions import selectors as sub_selectors

        applied = getattr(sub_selectors, "entitlement_seats_applied", None)
    except ImportError:  # pragma: no cover
        applied = None
    if applied is not None:
        value = applied(subscription=subscription, at=at)
        if value is not None:
            return value
    return _seat_count_at(subscription.pk, at)


def _reason(code: str, message: str) -> dict:
    return {"code": str(code), "message": message}


def invoice_checks_run(*, invoice: Invoice) -> list[dict]:
    """Every automatic pre-issue check; returns the failing ones as [{code, message}] (empty = issue it)."""
    reasons: list[dict] = []
    profile = _profile(invoice.customer_id)

    pending = TaxExemption.objects.filter(customer_id=invoice.customer_id, status=ExemptionStatus.SUBMITTED).first()
    if pending is not None:
        reasons.append(
            _reason(
                HoldReason.EXEMPTION_PENDING,
                f"Tax exemption certificate {pending.certificate_number} is awaiting review; decide it before "
                "issuing so the customer is not charged tax in error.",
            )
        )
    if invoice.exemption_id and invoice.period_end:
        expires = invoice.exemption.expires_on
        if invoice.period_start.date() <= expires < invoice.period_end.date():
            reasons.append(
                _reason(
                    HoldReason.EXEMPTION_EXPIRES,
                    f"The tax exemption expires on {expires.isoformat()}, within the invoiced period "
                    f"{invoice.period_start.date().isoformat()} – {invoice.period_end.date().isoformat()}.",
                )
            )
    if profile is not None and profile.requires_po and not invoice.po_number:
        reasons.append(
            _reason(HoldReason.PO_MISSING, "This customer requires a PO number on every invoice and none is set.")
        )
    if invoice.subscription_id and invoice.billed_seats is not None and invoice.period_start:
        provisioned = provisioned_seats(subscription=invoice.subscription, at=invoice.period_start)
        if provisioned is not None and provisioned != invoice.billed_seats:
            reasons.append(
                _reason(
                    HoldReason.SEATS_MISMATCH,
                    f"The invoice bills {invoice.billed_seats} seats but {provisioned} are provisioned for the period.",
                )
            )
    if not Invoice.objects.filter(customer_id=invoice.customer_id, issued_at__isnull=False).exists():
        reasons.append(_reason(HoldReason.FIRST_INVOICE, "First invoice of a new customer: review before it is sent."))
    reasons.extend(_amount_change_check(invoice))
    for problem in billing_address_problems(profile=profile):
        reasons.append(_reason(HoldReason.TAX_LOCATION_MISSING, problem))
    if invoice.total_minor < 0:
        reasons.append(
            _reason(
                HoldReason.NEGATIVE_TOTAL,
                "The total is negative; an invoice cannot be issued for a negative amount — carry the credit "
                "forward or issue a credit note.",
            )
        )
    expected_currency = (profile.currency if profile else "") or invoice.customer.currency
    if invoice.currency != expected_currency:
        reasons.append(
            _reason(
                HoldReason.CURRENCY_MISMATCH,
                f"The invoice is in {invoice.currency} but the customer is billed in {expected_currency}.",
            )
        )
    return reasons


def _amount_change_check(invoice: Invoice) -> list[dict]:
    if invoice.kind != InvoiceKind.REGULAR or not invoice.subscription_id or not invoice.period_start:
        return []
    previous = (
        Invoice.objects.filter(
            subscription_id=invoice.subscription_id,
            kind=InvoiceKind.REGULAR,
            issued_at__isnull=False,
            period_start__lt=invoice.period_start,
        )
        .exclude(status=InvoiceStatus.VOID)
        .order_by("-period_start")
        .first()
    )
    if previous is None or previous.total_minor == 0:
        return []
    # Compared on the recurring net amount: a one-time set-up fee is expected to drop away after the first invoice,
    # and a tax-rate change is not a billing change.
    previous_recurring = previous.subtotal_minor - _setup_total(previous)
    current_recurring = invoice.subtotal_minor - _setup_total(invoice)
    if previous_recurring <= 0:
        return []
    change = abs(Decimal(current_recurring - previous_recurring)) / Decimal(previous_recurring)
    if change <= AMOUNT_CHANGE_THRESHOLD:
        return []
    explained = (
        SubscriptionChange.objects.filter(subscription_id=invoice.subscription_id)
        .filter(Q(effective_at__gte=previous.period_start) & Q(effective_at__lt=invoice.period_end))
        .exists()
        or invoice.lines.filter(is_proration=True).exists()
    )
    if explained:
        return []
    percent = (change * 100).quantize(Decimal(1))
    return [
        _reason(
            HoldReason.AMOUNT_CHANGED,
            f"The total differs from the previous invoice {previous.number} by {percent}% "
            "and no subscription change explains it.",
        )
    ]


def _setup_total(invoice: Invoice) -> int:
    return sum(invoice.lines.filter(kind=LineKind.SETUP).values_list("amount_minor", flat=True))


# --- issuing --------------------------------------------------------------------------------------------------------


def _series(prefix: str, when: datetime) -> str:
    return f"{prefix}-{when.year}"


def number_allocate(*, series: str) -> int:
    """Next value of `series`, gapless: the sequence row is locked until the caller's transaction ends, so a rolled
    back issue returns its number. Must be called inside transaction.atomic()."""
    InvoiceNumberSequence.objects.get_or_create(series=series)
    sequence = InvoiceNumberSequence.objects.select_for_update().get(series=series)
    sequence.last_value += 1
    sequence.save(update_fields=["last_value", "updated_at"])
    return sequence.last_value


def _issue_locked(invoice: Invoice, *, actor: User | None, reason: str) -> None:
    _recompute(invoice)
    blocking = [r for r in invoice_checks_run(invoice=invoice) if r["code"] in BLOCKING_HOLDS]
    if blocking:
        invoice.hold_reasons = blocking
        if invoice.status == InvoiceStatus.DRAFT:
            _transition(invoice, InvoiceStatus.HELD, actor=actor, reason="; ".join(r["message"] for r in blocking))
        invoice.save()
        raise InvoiceNotIssuable(" ".join(r["message"] for r in blocking))
    now = timezone.now()
    prefix = getattr(settings, "INVOICE_NUMBER_PREFIX", "INV")
    series = _series(prefix, now)
    invoice.series = series
    invoice.number = f"{series}-{number_allocate(series=series):06d}"
    invoice.issued_at = now
    terms = BillingProfile.objects.filter(customer_id=invoice.customer_id).values_list("payment_terms_days", flat=True)
    invoice.due_on = (now + timedelta(days=terms.first() if terms.exists() else 30)).date()
    invoice.amount_due_minor = max(0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor)
    _transition(invoice, InvoiceStatus.OPEN, actor=actor, reason=reason)
    if invoice.amount_due_minor == 0:
        invoice.paid_at = now
        _transition(invoice, InvoiceStatus.PAID, actor=actor, reason="Nothing to pay.")
    invoice.save()
    invoice_id = invoice.pk
    transaction.on_commit(lambda: _after_issue(invoice_id))


def _after_issue(invoice_id: int) -> None:
    from billing.tasks import invoice_after_issue_task

    invoice_after_issue_task.delay(invoice_id)


def invoice_issue(*, invoice_id: int, actor: User | None = None, reason: str = "") -> Invoice:
    """Issue a draft/held invoice: recompute, assign the next gapless number of its year's series, set the due date,
    open it (or mark it paid when nothing is due). Refuses while a blocking check fails (pending exemption, missing
    tax location, negative total). After commit: PDF render, "invoice issued" e-mail, payment collection.

    Locks the invoice and the sequence row; idempotent in effect (an issued invoice raises InvalidTransition).
    """
    with transaction.atomic():
        invoice = _lock(invoice_id)
        if invoice.status not in EDITABLE_STATUSES:
            raise InvalidTransition(f"Invoice {invoice.number or invoice.pk} is already {invoice.status}.")
        _issue_locked(invoice, actor=actor, reason=reason)
    return invoice


def invoice_finalize(*, invoice_id: int, actor: User | None = None) -> Invoice:
    """Run the pre-issue checks on a draft/held invoice: issue it if all pass, else hold it with its reasons.

    Safe to call repeatedly (e.g. after every exemption decision or PO edit); issued invoices are left untouched.
    """
    with transaction.atomic():
        invoice = _lock(invoice_id)
        if invoice.status not in EDITABLE_STATUSES:
            return invoice
        _recompute(invoice)
        reasons = invoice_checks_run(invoice=invoice)
        invoice.checks_run_at = timezone.now()
        if reasons:
            changed = reasons != invoice.hold_reasons
            invoice.hold_reasons = reasons
            if invoice.status == InvoiceStatus.DRAFT:
                _transition(invoice, InvoiceStatus.HELD, actor=actor, reason="; ".join(r["message"] for r in reasons))
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
        _issue_locked(invoice, actor=actor, reason="All pre-issue checks passed.")
    return invoice


def invoice_approve_and_issue(*, invoice_id: int, actor: User, note: str = "") -> Invoice:
    """Billing staff approve a held invoice despite its (non-blocking) hold reasons and issue it.

    Blocking reasons (pending exemption, missing tax location, negative total) cannot be overridden: fix the cause.
    """
    with transaction.atomic():
        invoice = _lock(invoice_id)
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


# --- after issue ----------------------------------------------------------------------------------------------------


def _check_reason_code(reason_code: str) -> None:
    if reason_code not in CorrectionReason.values:
        raise ReasonCodeInvalid(f"Choose a reason: {', '.join(CorrectionReason.values)}.")


def invoice_void(*, invoice_id: int, reason_code: str, reason: str = "", actor: User | None = None) -> Invoice:
    """Void a draft, held or open invoice with a root-cause reason code (feeds the right-first-time rate).

    An open invoice with payments cannot be voided (refund through a credit note). Voiding a never-issued draft
    returns its pending items to the queue for the next invoice.
    """
    _check_reason_code(reason_code)
    with transaction.atomic():
        invoice = _lock(invoice_id)
        if invoice.amount_paid_minor > 0:
            raise InvalidTransition("This invoice has payments; issue a credit note (and refund) instead of voiding.")
        was_issued = invoice.is_issued
        _transition(invoice, InvoiceStatus.VOID, actor=actor, reason=f"{reason_code}: {reason}".strip(": "))
        invoice.void_reason_code = reason_code
        invoice.void_reason = reason
        invoice.voided_at = timezone.now()
        invoice.amount_due_minor = 0
        invoice.save()
        if not was_issued:
            PendingInvoiceItem.objects.filter(invoice=invoice).update(invoice=None)
    return invoice


def invoice_apply_payment(
    *,
    invoice_id: int,
    amount_minor: int,
    currency: str | None = None,
    paid_at: datetime | None = None,
    actor: User | None = None,
    reference: str = "",
) -> Invoice:
    """Record a payment of `amount_minor` against an open (or uncollectible) invoice; paid when nothing is due.

    Called by the payments work (Stripe) and by staff recording a bank transfer. Refuses other currencies,
    non-positive amounts and overpayment. Locks the invoice row.
    """
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        raise PaymentInvalid("A payment must be a positive whole number of minor units.")
    with transaction.atomic():
        invoice = _lock(invoice_id)
        if currency and currency.upper() != invoice.currency:
            raise CurrencyMismatch(
                f"The invoice is in {invoice.currency}; a {currency.upper()} payment cannot settle it."
            )
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE):
            raise InvalidTransition(f"Invoice {invoice.number or invoice.pk} is {invoice.status}; it takes no payment.")
        if amount_minor > invoice.amount_due_minor:
            raise PaymentInvalid(
                f"The payment ({amount_minor}) is more than the amount due ({invoice.amount_due_minor}).",
            )
        invoice.amount_paid_minor += amount_minor
        invoice.amount_due_minor = max(
            0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor
        )
        # Recorded now, happened when it was paid (a bank transfer entered days later): the trail shows that day.
        with audit_occurred_at(paid_at):
            amount = format_money(amount_minor, invoice.currency, invoice.customer.country)
            audit_record(
                customer=invoice.customer,
                actor=actor,
                action="invoice.payment_recorded",
                obj=invoice,
                summary=f"Payment of {amount} on {invoice.number}",
                after={"amount_minor": amount_minor, "currency": invoice.currency, "reference": reference},
            )
            if invoice.amount_due_minor == 0:
                invoice.paid_at = paid_at or timezone.now()
                _transition(invoice, InvoiceStatus.PAID, actor=actor, reason=reference or "Paid in full.")
        invoice.save()
    return invoice


def invoice_mark_uncollectible(*, invoice_id: int, reason: str = "", actor: User | None = None) -> Invoice:
    """Write off an open invoice (dunning's final step or staff). A later payment still settles it."""
    with transaction.atomic():
        invoice = _lock(invoice_id)
        _transition(invoice, InvoiceStatus.UNCOLLECTIBLE, actor=actor, reason=reason)
        invoice.save()
    return invoice
