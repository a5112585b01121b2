"""The automatic pre-issue checks: what holds a draft (tax location, exemption pending, address, amount change
against the previous invoice, seats, e-invoice validity, ...), for one invoice or a whole chunk (`CheckInputs`).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone

from billing.models import (
    BillingProfile,
    ExemptionStatus,
    HoldReason,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    InvoiceTaxLine,
    LineKind,
    TaxExemption,
)
from billing.services.einvoices import invoice_einvoice_problems
from billing.services.profiles import billing_address_problems
from subscriptions import selectors as sub_selectors
from subscriptions.clock import utc_date
from subscriptions.models import (
    SeatLedgerEntry,
    SubscriptionChange,
)
from subscriptions.prebuilt import prebuilt

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


# The fixed parts of CheckInputs' grouped and correlated queries, built once per process: Django resolves a
# subquery's or an aggregate's expressions when it is attached, most of the cost of building such a query. Each
# call filters a clone to its invoices; these are never evaluated themselves.
@prebuilt
def _ledger_and_previous():
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
    return Invoice.objects.annotate(ledger_seats=Subquery(ledger), previous_id=Subquery(previous)).values_list(
        "pk", "ledger_seats", "previous_id"
    )


@prebuilt
def _setup_totals():
    return (
        InvoiceLine.objects.filter(kind__in=_NOT_RECURRING)
        .values("invoice_id")
        .annotate(total=Sum("amount_minor"))
        .values_list("invoice_id", "total")
    )


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
        previous_of: dict[int, int] = {}
        for invoice_id, seats, previous_id in _ledger_and_previous().filter(pk__in=[i.pk for i in periodic]):
            self.ledger_seats[invoice_id] = seats
            if previous_id is not None:
                previous_of[invoice_id] = previous_id
        if previous_of:
            setup = dict(_setup_totals().filter(invoice_id__in=set(previous_of.values())))
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
