"""Invoices: drafting, recomputing, the automatic pre-issue checks, issuing with gapless numbers, payments, voids.

State machine: billing.models.INVOICE_TRANSITIONS is the one table; `invoice_transition` is the one place that
changes an invoice's status (row locked, table checked, InvoiceStatusChange + audit row written, side effects on
commit).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone

from billing.dispatch_shim import enqueue_on_commit
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
from billing.services.einvoices import invoice_einvoice_problems
from billing.services.events import invoice_status_event, invoice_status_event_record
from billing.services.profiles import billing_address_problems, e_invoice_applies
from billing.services.tax import TaxData, TaxResult, tax_compute, tax_context_for
from billing.services.transitions import transition_set
from subscriptions import bulk
from subscriptions import selectors as sub_selectors
from subscriptions.clock import utc_date
from subscriptions.models import (
    ActorKind,
    AuditEvent,
    Customer,
    SeatLedgerEntry,
    Subscription,
    SubscriptionChange,
    User,
)
from subscriptions.services.audit import audit_occurred_at, audit_record
from subscriptions.services.events import events_record_many

AMOUNT_CHANGE_THRESHOLD = Decimal("0.25")
# Checks staff cannot override with "approve and issue": they would issue a wrong or unaddressable invoice.
# An invalid e-invoice is blocking too: it would go out as a file the standard rejects (fix the data or switch
# e-invoicing off for the customer).
BLOCKING_HOLDS = frozenset(
    {
        HoldReason.EXEMPTION_PENDING,
        HoldReason.TAX_LOCATION_MISSING,
        HoldReason.NEGATIVE_TOTAL,
        HoldReason.EINVOICE_INVALID,
    }
)


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
    discount_id: int | None = None

    @property
    def amount(self) -> int:
        return self.amount_minor if self.amount_minor is not None else self.quantity * self.unit_amount_minor


# --- internals ------------------------------------------------------------------------------------------------------


def invoice_lock(invoice_id: int) -> Invoice:
    """Lock one invoice row (inside the caller's transaction); NotFound when it does not exist. Lock several rows
    (invoice with payments, refunds or a dunning case) through billing.locks instead, which fixes the order."""
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


def _transition_rows(
    invoice: Invoice, to_status: str, *, actor: User | None, reason: str
) -> tuple[InvoiceStatusChange, dict]:
    """Move `invoice` to `to_status` per INVOICE_TRANSITIONS (in memory); return its unsaved status-change row and
    the fields of its audit row. Shared by `invoice_transition` and the billing run's batch path, which writes them
    in bulk."""
    from_status = transition_set(invoice, to_status)
    change = InvoiceStatusChange(
        invoice=invoice, from_status=from_status, to_status=to_status, actor=actor, reason=reason[:2000]
    )
    audit = {
        "action": f"invoice.{to_status}",
        "object_type": invoice._meta.model_name,
        "object_id": str(invoice.pk),
        "summary": f"Invoice {invoice.number or '#' + str(invoice.pk)}: {InvoiceStatus(to_status).label.lower()}"[:300],
        "before": {"status": from_status},
        "after": {"status": to_status},
        "reason": reason,
    }
    return change, audit


def invoice_transition(invoice: Invoice, to_status: str, *, actor: User | None = None, reason: str = "") -> None:
    """Move a LOCKED invoice to `to_status` per INVOICE_TRANSITIONS; write the status-change and audit rows."""
    change, audit = _transition_rows(invoice, to_status, actor=actor, reason=reason)
    change.save()
    audit_record(
        customer=invoice.customer,
        actor=actor,
        action=audit["action"],
        obj=invoice,
        summary=audit["summary"],
        before=audit["before"],
        after=audit["after"],
        reason=reason,
    )
    invoice_status_event_record(invoice)


def _profile(customer_id: int) -> BillingProfile | None:
    return BillingProfile.objects.filter(customer_id=customer_id).first()


def _tax_date(invoice: Invoice):
    return utc_date(invoice.period_start or invoice.created_at or timezone.now())


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
        invoice.buyer_details = {
            "line1": profile.address_line1,
            "line2": profile.address_line2,
            "city": profile.city,
            "region": profile.region,
            "postal_code": profile.postal_code,
            "country": profile.country,
            "buyer_reference": profile.buyer_reference,
        }
    else:
        invoice.billing_legal_name = customer.legal_name or customer.name
        invoice.buyer_details = {}
    invoice.e_invoice = e_invoice_applies(profile=profile)
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


def _recompute(invoice: Invoice) -> tuple[BillingProfile | None, list[InvoiceLine]]:
    """Recompute tax lines and totals of an EDITABLE invoice and copy the billing details it will print; returns the
    profile and lines it read (the checks reuse them instead of loading them again).

    Called on every draft change and once at issue, so an issued invoice carries the details and rates of its issue.
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
    return profile, lines


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
            discount_id=line.discount_id,
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
    invoice = invoice_lock(invoice_id)
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
    """Recompute tax and copied details of a draft/held invoice (e.g. after an exemption decision).

    An invoice issued meanwhile (by the billing run, staff or another recheck between the caller's read and this
    lock) is left untouched, as `invoice_finalize` does: issued invoices change only through credit notes.
    """
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if invoice.status not in EDITABLE_STATUSES:
            return invoice
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


def _reason(code: str, message: str) -> dict:
    return {"code": str(code), "message": message}


@dataclass(frozen=True)
class _PreviousInvoice:
    """The previous issued regular invoice of a subscription, as the amount-change check reads it."""

    period_start: datetime
    number: str
    total_minor: int
    recurring_minor: int  # subtotal minus one-time set-up lines


# Left out of the "recurring amount" the amount-change check compares: the one-time set-up fee (expected to drop away
# after the first invoice) and discount lines (a discount starting or ending is a planned change, not an error).
_NOT_RECURRING = (LineKind.SETUP, LineKind.DISCOUNT)


def _setup_minor(lines) -> int:
    return sum(line.amount_minor for line in lines if line.kind in _NOT_RECURRING)


class CheckInputs:
    """Everything the pre-issue checks read for a set of invoices, loaded in a constant number of queries.

    The single path (`invoice_finalize`) loads it for one invoice, the billing run (`invoices_finalize_batch`) for a
    chunk; both evaluate it with the same `_checks_evaluate`, so a check can never give one answer in the run and
    another when staff re-check. `profiles` ({customer_id: profile}) and `lines` ({invoice_id: [lines]}) may be
    passed by a caller that has just loaded them to recompute tax.

    Invoices issued while a chunk is processed are recorded with `record_issued`, so a later invoice of the same
    chunk sees them exactly as it would had they been issued one at a time before it (catch-up periods of one
    subscription: November compares with the October issued a moment earlier).
    """

    def __init__(self, invoices: list[Invoice], *, profiles: dict | None = None, lines: dict | None = None):
        invoice_ids = [invoice.pk for invoice in invoices]
        customer_ids = {invoice.customer_id for invoice in invoices}
        if profiles is None:
            profiles = {p.customer_id: p for p in BillingProfile.objects.filter(customer_id__in=customer_ids)}
        self.profiles = profiles
        if lines is None:
            lines = {}
            for line in InvoiceLine.objects.filter(invoice_id__in=invoice_ids):
                lines.setdefault(line.invoice_id, []).append(line)
        self.lines = lines
        # Same pick as `.filter(...).first()` on TaxExemption's ordering (latest submitted first).
        self.pending: dict[int, TaxExemption] = {}
        for exemption in TaxExemption.objects.filter(
            customer_id__in=customer_ids, status=ExemptionStatus.SUBMITTED
        ).order_by("-submitted_at", "-id"):
            self.pending.setdefault(exemption.customer_id, exemption)
        self.established = set(
            Invoice.objects.filter(customer_id__in=customer_ids, issued_at__isnull=False)
            .order_by()  # no Meta ordering: its columns would join the DISTINCT
            .values_list("customer_id", flat=True)
            .distinct()
        )
        # Stored tax lines of the e-invoiced drafts (both paths have written them by now): one query, none otherwise.
        self.tax_lines: dict[int, list[InvoiceTaxLine]] = {}
        e_invoiced = [invoice.pk for invoice in invoices if invoice.e_invoice]
        if e_invoiced:
            for tax_line in InvoiceTaxLine.objects.filter(invoice_id__in=e_invoiced):
                self.tax_lines.setdefault(tax_line.invoice_id, []).append(tax_line)
        self.ledger_seats: dict[int, int | None] = {}
        self.previous: dict[int, _PreviousInvoice] = {}
        self.changes: dict[int, list[datetime]] = {}
        self.issued_now: dict[int, list[_PreviousInvoice]] = {}
        self.applied_seats: dict[int, sub_selectors.SeatsProvisioned] = {}
        self.now = timezone.now()
        periodic = [i for i in invoices if i.subscription_id and i.period_start]
        if not periodic:
            return
        current = {i.subscription_id for i in periodic if i.period_end and i.period_start <= self.now < i.period_end}
        if current:
            self.applied_seats = sub_selectors.seats_provisioned_for_subscriptions(subscription_ids=current)
        # Seats in force at the period start (seat ledger) and the previous issued regular invoice: one query, two
        # correlated subqueries on indexed columns.
        ledger = (
            SeatLedgerEntry.objects.filter(
                subscription_id=OuterRef("subscription_id"), effective_at__lte=OuterRef("period_start")
            )
            .order_by("-effective_at", "-id")
            .values("seats_to")[:1]
        )
        previous = (
            Invoice.objects.filter(
                subscription_id=OuterRef("subscription_id"),
                kind=InvoiceKind.REGULAR,
                issued_at__isnull=False,
                period_start__lt=OuterRef("period_start"),
            )
            .exclude(status=InvoiceStatus.VOID)
            .order_by("-period_start")
            .values("pk")[:1]
        )
        previous_of: dict[int, int] = {}
        for invoice_id, seats, previous_id in (
            Invoice.objects.filter(pk__in=[i.pk for i in periodic])
            .annotate(ledger_seats=Subquery(ledger), previous_id=Subquery(previous))
            .values_list("pk", "ledger_seats", "previous_id")
        ):
            self.ledger_seats[invoice_id] = seats
            if previous_id is not None:
                previous_of[invoice_id] = previous_id
        if previous_of:
            setup = dict(
                InvoiceLine.objects.filter(invoice_id__in=set(previous_of.values()), kind__in=_NOT_RECURRING)
                .values("invoice_id")
                .annotate(total=Sum("amount_minor"))
                .values_list("invoice_id", "total")
            )
            rows = {
                pk: _PreviousInvoice(start, number, total, subtotal - (setup.get(pk) or 0))
                for pk, start, number, total, subtotal in Invoice.objects.filter(
                    pk__in=set(previous_of.values())
                ).values_list("pk", "period_start", "number", "total_minor", "subtotal_minor")
            }
            self.previous = {invoice_id: rows[previous_id] for invoice_id, previous_id in previous_of.items()}
        # Recorded subscription changes that may explain an amount change: from the earliest possible previous
        # period start (a previous invoice, or one issued earlier in this chunk) on.
        since = min([p.period_start for p in self.previous.values()] + [i.period_start for i in periodic])
        for subscription_id, effective_at in SubscriptionChange.objects.filter(
            subscription_id__in={i.subscription_id for i in periodic}, effective_at__gte=since
        ).values_list("subscription_id", "effective_at"):
            self.changes.setdefault(subscription_id, []).append(effective_at)

    def provisioned(self, invoice: Invoice) -> int | None:
        """Seats actually provisioned for the invoiced period: for the period running now, what provisioning has
        applied (the seat entitlement), so seats that were never switched on are not billed; for a past period
        (a catch-up), or once the seats have changed since the period start (a mid-period change is billed by
        its own proration), what the seat ledger had in force at the period start."""
        seats = self.applied_seats.get(invoice.subscription_id)
        if (
            seats is not None
            and invoice.period_end
            and invoice.period_start <= self.now < invoice.period_end
            and seats.purchased == invoice.billed_seats  # else seats changed since the period start: ledger rules
        ):
            return seats.applied
        if invoice.pk in self.ledger_seats:
            return self.ledger_seats[invoice.pk]
        return _seat_count_at(invoice.subscription_id, invoice.period_start)

    def previous_for(self, invoice: Invoice) -> _PreviousInvoice | None:
        candidates = [
            p for p in self.issued_now.get(invoice.subscription_id, []) if p.period_start < invoice.period_start
        ]
        if invoice.pk in self.previous:
            candidates.append(self.previous[invoice.pk])
        return max(candidates, key=lambda p: p.period_start, default=None)

    def record_issued(self, invoice: Invoice) -> None:
        """`invoice` (of these inputs) is being issued: later invoices of the same batch must see it."""
        self.established.add(invoice.customer_id)
        if invoice.kind == InvoiceKind.REGULAR and invoice.subscription_id and invoice.period_start:
            self.issued_now.setdefault(invoice.subscription_id, []).append(
                _PreviousInvoice(
                    invoice.period_start,
                    invoice.number or "",
                    invoice.total_minor,
                    invoice.subtotal_minor - _setup_minor(self.lines.get(invoice.pk, [])),
                )
            )


def invoice_checks_run(*, invoice: Invoice) -> list[dict]:
    """Every automatic pre-issue check; returns the failing ones as [{code, message}] (empty = issue it)."""
    return _checks_evaluate(invoice, CheckInputs([invoice]))


def _checks_evaluate(invoice: Invoice, inputs: CheckInputs) -> list[dict]:
    """The pre-issue checks of one invoice on preloaded inputs; no query (unless entitlements provide seats)."""
    reasons: list[dict] = []
    profile = inputs.profiles.get(invoice.customer_id)

    pending = inputs.pending.get(invoice.customer_id)
    if pending is not None:
        reasons.append(
            _reason(
                HoldReason.EXEMPTION_PENDING,
                f"Tax exemption certificate {pending.certificate_number} is awaiting review; decide it before "
                "issuing so the customer is not charged tax in error.",
            )
        )
    if invoice.exemption_id and invoice.period_end:
        # `expires_on` is the certificate's last valid day; the period's last day is the day before its end.
        expires = invoice.exemption.expires_on
        last_day = utc_date(invoice.period_end) - timedelta(days=1)
        if utc_date(invoice.period_start) <= expires < last_day:
            reasons.append(
                _reason(
                    HoldReason.EXEMPTION_EXPIRES,
                    f"The tax exemption is valid until {expires.isoformat()}, before the end of the invoiced period "
                    f"{utc_date(invoice.period_start).isoformat()} – {last_day.isoformat()}.",
                )
            )
    if profile is not None and profile.requires_po and not invoice.po_number:
        reasons.append(
            _reason(HoldReason.PO_MISSING, "This customer requires a PO number on every invoice and none is set.")
        )
    if invoice.subscription_id and invoice.billed_seats is not None and invoice.period_start:
        provisioned = inputs.provisioned(invoice)
        if provisioned is not None and provisioned != invoice.billed_seats:
            reasons.append(
                _reason(
                    HoldReason.SEATS_MISMATCH,
                    f"The invoice bills {invoice.billed_seats} seats but {provisioned} are provisioned for the period.",
                )
            )
    if invoice.customer_id not in inputs.established:
        reasons.append(_reason(HoldReason.FIRST_INVOICE, "First invoice of a new customer: review before it is sent."))
    reasons.extend(_amount_change_check(invoice, inputs))
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
    for message in invoice_einvoice_problems(
        invoice=invoice,
        lines=inputs.lines.get(invoice.pk, []),
        tax_lines=inputs.tax_lines.get(invoice.pk, []),
        profile=profile,
        now=inputs.now,
    ):
        reasons.append(_reason(HoldReason.EINVOICE_INVALID, message))
    return reasons


def _amount_change_check(invoice: Invoice, inputs: CheckInputs) -> list[dict]:
    if invoice.kind != InvoiceKind.REGULAR or not invoice.subscription_id or not invoice.period_start:
        return []
    previous = inputs.previous_for(invoice)
    if previous is None or previous.total_minor == 0:
        return []
    # Compared on the recurring net amount: a one-time set-up fee is expected to drop away after the first invoice,
    # and a tax-rate change is not a billing change.
    lines = inputs.lines.get(invoice.pk, [])
    previous_recurring = previous.recurring_minor
    current_recurring = invoice.subtotal_minor - _setup_minor(lines)
    if previous_recurring <= 0:
        return []
    change = abs(Decimal(current_recurring - previous_recurring)) / Decimal(previous_recurring)
    if change <= AMOUNT_CHANGE_THRESHOLD:
        return []
    explained = any(
        previous.period_start <= at < invoice.period_end for at in inputs.changes.get(invoice.subscription_id, [])
    ) or any(line.is_proration for line in lines)
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


# --- issuing --------------------------------------------------------------------------------------------------------


def _series(prefix: str, when: datetime) -> str:
    return f"{prefix}-{when.year}"


def _sequence_locked(series: str) -> InvoiceNumberSequence:
    """The sequence row of `series`, locked (SELECT … FOR UPDATE) until the caller's transaction ends."""
    InvoiceNumberSequence.objects.get_or_create(series=series)
    return InvoiceNumberSequence.objects.select_for_update().get(series=series)


def number_allocate(*, series: str) -> int:
    """Next value of `series`, gapless: the sequence row is locked until the caller's transaction ends, so a rolled
    back issue returns its number. Must be called inside transaction.atomic()."""
    sequence = _sequence_locked(series)
    sequence.last_value += 1
    sequence.save(update_fields=["last_value", "updated_at"])
    return sequence.last_value


def _set_issued(invoice: Invoice, *, now: datetime, series: str, value: int, profile: BillingProfile | None) -> None:
    """Number, issue date, due date and amount due of an invoice being issued (status changes are the caller's)."""
    invoice.series = series
    invoice.number = f"{series}-{value:06d}"
    invoice.issued_at = now
    invoice.due_on = utc_date(now + timedelta(days=profile.payment_terms_days if profile is not None else 30))
    invoice.amount_due_minor = max(0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor)


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
    """The after-issue task of each invoice, exactly as `_after_issue` queues it (one message per invoice), from one
    after-commit callback for the chunk."""
    for invoice_id in invoice_ids:
        _after_issue(invoice_id)


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


# --- after issue ----------------------------------------------------------------------------------------------------


def correction_reason_check(reason_code: str) -> None:
    """Refuse a void or credit note without one of the root-cause codes (CorrectionReason)."""
    if reason_code not in CorrectionReason.values:
        raise ReasonCodeInvalid(f"Choose a reason: {', '.join(CorrectionReason.values)}.")


def invoice_void(*, invoice_id: int, reason_code: str, reason: str = "", actor: User | None = None) -> Invoice:
    """Void a draft, held or open invoice with a root-cause reason code (feeds the right-first-time rate).

    An open invoice with payments cannot be voided (refund through a credit note). Voiding a never-issued draft
    returns its pending items to the queue for the next invoice.
    """
    correction_reason_check(reason_code)
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        if invoice.amount_paid_minor > 0:
            raise InvalidTransition("This invoice has payments; issue a credit note (and refund) instead of voiding.")
        was_issued = invoice.is_issued
        invoice_transition(invoice, InvoiceStatus.VOID, actor=actor, reason=f"{reason_code}: {reason}".strip(": "))
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

    Called by billing.services.payments (cards through Stripe, and staff recording a bank transfer). Refuses other
    currencies, non-positive amounts and overpayment. Locks the invoice row.
    """
    if not isinstance(amount_minor, int) or isinstance(amount_minor, bool) or amount_minor <= 0:
        raise PaymentInvalid("A payment must be a positive whole number of minor units.")
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
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
                invoice_transition(invoice, InvoiceStatus.PAID, actor=actor, reason=reference or "Paid in full.")
        invoice.save()
    return invoice


def invoice_mark_uncollectible(*, invoice_id: int, reason: str = "", actor: User | None = None) -> Invoice:
    """Write off an open invoice (dunning's final step or staff). A later payment still settles it."""
    with transaction.atomic():
        invoice = invoice_lock(invoice_id)
        invoice_transition(invoice, InvoiceStatus.UNCOLLECTIBLE, actor=actor, reason=reason)
        invoice.save()
    return invoice
