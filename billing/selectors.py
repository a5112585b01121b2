"""Reusable reads for billing. Every per-customer selector scopes by customer and raises NotFound for another
customer's object, so views and the API never reveal that it exists."""

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, Exists, JSONField, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, JSONObject, TruncMonth

from billing.exceptions import NotFound
from billing.models import (
    BillingProfile,
    CreditNote,
    ExemptionStatus,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    RefundStatus,
    TaxExemption,
)
from billing.services.tax import TaxContext, tax_compute, tax_context_for
from subscriptions.clock import utc_date
from subscriptions.models import Customer

# Issued documents only: customers never see drafts or held invoices.
CUSTOMER_VISIBLE = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE)


def billing_profile_for_customer(*, customer: Customer) -> BillingProfile | None:
    return BillingProfile.objects.filter(customer=customer).first()


def invoice_list_for_customer(*, customer: Customer, statuses: tuple[str, ...] | None = None) -> QuerySet[Invoice]:
    """The customer's issued invoices, newest first (constant queries: no per-row lookups needed to list them)."""
    return Invoice.objects.filter(
        customer=customer, status__in=statuses or CUSTOMER_VISIBLE, number__isnull=False
    ).order_by("-issued_at", "-id")


def invoice_get_for_customer(
    *, customer: Customer, invoice_id: int | None = None, number: str | None = None
) -> Invoice:
    queryset = invoice_list_for_customer(customer=customer).prefetch_related(
        Prefetch("lines", queryset=InvoiceLine.objects.order_by("position", "id")), "tax_lines", "credit_notes"
    )
    try:
        if number is not None:
            return queryset.get(number=number)
        return queryset.get(pk=invoice_id)
    except (Invoice.DoesNotExist, ValueError, TypeError):
        raise NotFound("That invoice does not exist.")


def credit_note_list_for_customer(*, customer: Customer) -> QuerySet[CreditNote]:
    return (
        CreditNote.objects.filter(customer=customer).select_related("invoice", "refund").order_by("-issued_at", "-id")
    )


@dataclass(frozen=True)
class RefundSummary:
    """What a credit note gives back, as the customer sees it.

    status: `none` (the credit only lowered what was still due), `pending` (money is going back: a card refund
    in progress, or a bank transfer billing staff have yet to pay), `refunded`, or `failed` (a card refund Stripe
    refused; billing staff follow up). method: `card`, `bank_transfer` or None while not yet decided/recorded.
    """

    amount_minor: int
    currency: str
    status: str
    method: str | None


def credit_note_refund_summary(*, credit_note: CreditNote) -> RefundSummary:
    """Reads `credit_note.refund` (select it with `select_related("refund")` to avoid a query per note)."""
    due = credit_note.refund_due_minor
    if due <= 0:
        return RefundSummary(0, credit_note.currency, "none", None)
    try:
        refund = credit_note.refund
    except ObjectDoesNotExist:  # reverse one-to-one: no Refund row yet
        refund = None
    if refund is None:
        return RefundSummary(due, credit_note.currency, "pending", None)
    method = "bank_transfer" if refund.reference else "card"
    status = {RefundStatus.SUCCEEDED: "refunded", RefundStatus.FAILED: "failed"}.get(refund.status, "pending")
    return RefundSummary(refund.amount_minor, refund.currency, status, method)


def credit_note_get_for_customer(*, customer: Customer, credit_note_id: int) -> CreditNote:
    try:
        return credit_note_list_for_customer(customer=customer).prefetch_related("lines").get(pk=credit_note_id)
    except (CreditNote.DoesNotExist, ValueError, TypeError):
        raise NotFound("That credit note does not exist.")


def tax_exemption_list_for_customer(*, customer: Customer) -> QuerySet[TaxExemption]:
    """Every exemption of the customer (history included), newest first."""
    return TaxExemption.objects.filter(customer=customer).select_related("reviewer").order_by("-submitted_at", "-id")


def tax_exemption_current_in(exemptions: list[TaxExemption]) -> TaxExemption | None:
    """`tax_exemption_current_for_customer` picked from *all* the customer's exemptions, already loaded in the
    order of `tax_exemption_list_for_customer` (the tax page's history): no query."""
    for status in (ExemptionStatus.SUBMITTED, ExemptionStatus.APPROVED):
        found = next((e for e in exemptions if e.status == status), None)
        if found is not None:
            return found
    return exemptions[0] if exemptions else None


def tax_exemption_current_for_customer(*, customer: Customer) -> TaxExemption | None:
    """The exemption that matters now: one awaiting review, else the approved one, else the latest decision."""
    exemptions = tax_exemption_list_for_customer(customer=customer)
    return (
        exemptions.filter(status=ExemptionStatus.SUBMITTED).first()
        or exemptions.filter(status=ExemptionStatus.APPROVED).first()
        or exemptions.first()
    )


def tax_exemption_get_for_customer(*, customer: Customer, exemption_id: int) -> TaxExemption:
    try:
        return TaxExemption.objects.get(pk=exemption_id, customer=customer)
    except (TaxExemption.DoesNotExist, ValueError, TypeError):
        raise NotFound("That tax exemption does not exist.")


def tax_exemption_certificate_for_customer(*, customer: Customer, exemption_id: int) -> tuple[bytes, str, str]:
    """(bytes, content type, download name) of a certificate — only if it belongs to `customer` (else NotFound).

    Staff views pass the exemption's own customer. The content type is the one sniffed at upload.
    """
    exemption = tax_exemption_get_for_customer(customer=customer, exemption_id=exemption_id)
    with exemption.certificate.open("rb") as handle:
        data = handle.read()
    extension = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}[exemption.certificate_content_type]
    # The number is the customer's text (and rows stored before it was validated may hold anything): the file name
    # keeps only safe ASCII, so no header, path or bidi trick survives into a download.
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", exemption.certificate_number).strip("-.")[:80] or str(exemption.pk)
    return data, exemption.certificate_content_type, f"tax-certificate-{safe}.{extension}"


def invoice_previous(*, invoice: Invoice) -> Invoice | None:
    """The customer's previous issued invoice for the same subscription (for the staff diff)."""
    queryset = Invoice.objects.filter(customer_id=invoice.customer_id, issued_at__isnull=False).exclude(pk=invoice.pk)
    if invoice.subscription_id:
        queryset = queryset.filter(subscription_id=invoice.subscription_id, kind=InvoiceKind.REGULAR)
    if invoice.period_start:
        queryset = queryset.filter(period_start__lt=invoice.period_start)
    return queryset.exclude(status=InvoiceStatus.VOID).order_by("-period_start", "-issued_at").first()


def invoice_diff_against_previous(*, invoice: Invoice) -> dict:
    """Line-by-line comparison with the previous invoice: rows of {description, previous_minor, current_minor,
    delta_minor} matched by SKU code and kind, plus totals. Used by the review queue."""
    previous = invoice_previous(invoice=invoice)

    def key(line: InvoiceLine) -> tuple[str, str]:
        return (line.kind, line.sku_code or line.description)

    current_lines = {key(line): line for line in invoice.lines.all()}
    previous_lines = {key(line): line for line in previous.lines.all()} if previous else {}
    rows = []
    for k in list(previous_lines) + [k for k in current_lines if k not in previous_lines]:
        cur, prev = current_lines.get(k), previous_lines.get(k)
        rows.append(
            {
                "description": (cur or prev).description,
                "previous_minor": prev.amount_minor if prev else 0,
                "current_minor": cur.amount_minor if cur else 0,
                "previous_quantity": prev.quantity if prev else 0,
                "current_quantity": cur.quantity if cur else 0,
                "delta_minor": (cur.amount_minor if cur else 0) - (prev.amount_minor if prev else 0),
            }
        )
    return {
        "previous": previous,
        "rows": rows,
        "previous_total_minor": previous.total_minor if previous else 0,
        "current_total_minor": invoice.total_minor,
        "delta_total_minor": invoice.total_minor - (previous.total_minor if previous else 0),
    }


def right_first_time_by_month(*, since: date | None = None, until: date | None = None) -> list[dict]:
    """Right-first-time rate per month of issue: issued invoices never corrected ÷ all issued.

    "Corrected" = voided after issue or credited by at least one credit note. Leading causes are the reason codes of
    those corrections (credit notes and voids), most frequent first. Months with no issued invoice are omitted.
    Returns [{month: date, issued, corrected, right_first_time: float (0–1), causes: [(code, count), ...]}].
    """
    issued = Invoice.objects.filter(issued_at__isnull=False)
    if since:
        issued = issued.filter(issued_at__date__gte=since)
    if until:
        issued = issued.filter(issued_at__date__lt=until)
    credited = CreditNote.objects.filter(invoice=OuterRef("pk"))
    rows = (
        issued.annotate(month=TruncMonth("issued_at"), credited=Exists(credited))
        .values("month")
        .annotate(
            issued_count=Count("id"),
            corrected=Count("id", filter=Q(credited=True) | Q(status=InvoiceStatus.VOID)),
        )
        .order_by("month")
    )
    causes: dict[date, Counter] = {}
    for month, code in (
        CreditNote.objects.filter(invoice__in=issued)
        .annotate(month=TruncMonth("invoice__issued_at"))
        .values_list("month", "reason_code")
    ):
        causes.setdefault(_month(month), Counter())[code] += 1
    for month, code in (
        issued.filter(status=InvoiceStatus.VOID)
        .annotate(month=TruncMonth("issued_at"))
        .values_list("month", "void_reason_code")
    ):
        causes.setdefault(_month(month), Counter())[code or "other"] += 1
    result = []
    for row in rows:
        month = _month(row["month"])
        total = row["issued_count"]
        result.append(
            {
                "month": month,
                "issued": total,
                "corrected": row["corrected"],
                "right_first_time": (total - row["corrected"]) / total if total else 1.0,
                "causes": causes.get(month, Counter()).most_common(),
            }
        )
    return result


def _month(value) -> date:
    return utc_date(value).replace(day=1) if isinstance(value, datetime) else value.replace(day=1)


# --- next-invoice estimates (the portal dashboard) ---------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceEstimate:
    """Roughly what a coming invoice will say: the given lines taxed the way the billing run will tax them.

    An estimate, not a quote: the invoice itself is computed when it is drafted (rates, exemptions and terms as they
    are on that day). `tax_known` is False while the billing address has no country (nothing can be determined).
    """

    currency: str
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    tax_names: tuple[str, ...]
    exempt: bool
    reverse_charge: bool
    tax_known: bool


def invoice_estimates_for_customer(
    *,
    customer_id: int,
    profile: BillingProfile | None,
    items: dict[object, tuple[str, date, list[tuple[int, str]]]],
    has_exemptions: bool = True,
) -> dict[object, InvoiceEstimate]:
    """Estimate tax on coming invoices of one customer. `items` maps any key to (currency, tax date, lines as
    (amount_minor, tax_category)); the result maps the same keys to estimates.

    Uses billing's own tax determination (`tax_context_for`: location, rates, approved exemption, EU reverse charge)
    and computation (`tax_compute`: per rate, rounded once), so an exempt or reverse-charged customer sees 0 tax.
    Two queries per distinct tax date (none when the address has no country; one when the caller knows the customer
    has no tax exemption at all: `has_exemptions=False`); no writes.
    """
    contexts: dict[date, TaxContext] = {}
    estimates = {}
    for key, (currency, tax_date, lines) in items.items():
        if tax_date not in contexts:
            contexts[tax_date] = tax_context_for(
                customer_id=customer_id, profile=profile, tax_date=tax_date, check_exemptions=has_exemptions
            )
        context = contexts[tax_date]
        result = tax_compute(lines=lines, context=context)
        estimates[key] = InvoiceEstimate(
            currency=currency,
            subtotal_minor=result.subtotal_minor,
            tax_minor=result.tax_minor,
            total_minor=result.total_minor,
            tax_names=tuple(line.name for line in result.tax_lines if line.tax_minor),
            exempt=context.exemption is not None,
            reverse_charge=context.reverse_charge,
            tax_known=bool(context.country),
        )
    return estimates


# --- overdue invoices ------------------------------------------------------------------------------------------------

# Issued and still owed: an open invoice, or one written off that a payment still settles.
OVERDUE_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


@dataclass(frozen=True)
class OverdueInvoice:
    """The customer's oldest overdue invoice, and how many others are overdue too."""

    invoice_id: int
    number: str
    amount_due_minor: int
    currency: str
    due_on: date
    others: int = 0


def invoices_overdue(*, today: date) -> QuerySet[Invoice]:
    """Invoices with money due after their due date (one due today is not overdue yet), oldest due first."""
    return Invoice.objects.filter(
        status__in=OVERDUE_STATUSES, amount_due_minor__gt=0, due_on__lt=today, number__isnull=False
    ).order_by("due_on", "pk")


# --- dashboard nudges (customer-facing) -------------------------------------------------------------------------------

# A certificate this close to its expiry date gets the customer a nudge to upload the next one.
EXEMPTION_EXPIRY_NOTICE_DAYS = 30


@dataclass(frozen=True)
class UnpaidInvoice:
    """The customer's oldest issued invoice with money still due that is not overdue yet (due today or later)."""

    invoice_id: int
    number: str
    amount_due_minor: int
    currency: str
    due_on: date


def billing_nudge_annotations(*, customer_ref: str, today: date) -> dict:
    """Annotations for any query with a customer id in `customer_ref`, for the dashboard's banner and nudges in that
    same query (no query of their own):

    - `oldest_unpaid`: the customer's issued invoice with money due and the earliest due date, whether overdue or
      not, and `overdue_count` (as `invoices_overdue` defines overdue). One subquery serves both the overdue banner
      and the "unpaid invoice" nudge: when the earliest-due one is not overdue, none is. Read back with
      `overdue_from_nudges` and `unpaid_invoice_from`.
    - `exemption_expiring_on`: the expiry date of an approved tax-exemption certificate that runs out within
      EXEMPTION_EXPIRY_NOTICE_DAYS, unless a replacement is already submitted (`exemption_expiring_from`).
    """
    unpaid = Invoice.objects.filter(
        customer_id=OuterRef(customer_ref),
        status__in=OVERDUE_STATUSES,
        amount_due_minor__gt=0,
        number__isnull=False,
        due_on__isnull=False,
    )
    oldest = (
        unpaid.order_by("due_on", "pk")
        .annotate(
            summary=JSONObject(
                invoice_id="pk",
                number="number",
                amount_due_minor="amount_due_minor",
                currency="currency",
                due_on="due_on",
            )
        )
        .values("summary")[:1]
    )
    overdue_count = unpaid.filter(due_on__lt=today).order_by().values("customer_id").annotate(n=Count("pk")).values("n")
    expiring = (
        TaxExemption.objects.filter(
            customer_id=OuterRef(customer_ref),
            status=ExemptionStatus.APPROVED,
            expires_on__gte=today,
            expires_on__lte=today + timedelta(days=EXEMPTION_EXPIRY_NOTICE_DAYS),
        )
        .filter(
            ~Exists(TaxExemption.objects.filter(customer_id=OuterRef("customer_id"), status=ExemptionStatus.SUBMITTED))
        )
        .order_by("expires_on")
        .values("expires_on")[:1]
    )
    return {
        "oldest_unpaid": Subquery(oldest, output_field=JSONField()),
        "overdue_count": Coalesce(Subquery(overdue_count), 0),
        "exemption_expiring_on": Subquery(expiring),
    }


def _oldest_unpaid(row) -> UnpaidInvoice | None:
    summary = row.oldest_unpaid
    if not summary:
        return None
    if isinstance(summary, str):  # a JSON text, on a backend that does not decode it
        summary = json.loads(summary)
    due_on = summary["due_on"]
    return UnpaidInvoice(
        invoice_id=int(summary["invoice_id"]),
        number=summary["number"],
        amount_due_minor=int(summary["amount_due_minor"]),
        currency=summary["currency"],
        due_on=due_on if isinstance(due_on, date) else date.fromisoformat(str(due_on)[:10]),
    )


def overdue_from_nudges(row, *, today: date) -> OverdueInvoice | None:
    """The `OverdueInvoice` of a row annotated with `billing_nudge_annotations`."""
    oldest = _oldest_unpaid(row)
    if oldest is None or oldest.due_on >= today:
        return None
    return OverdueInvoice(
        invoice_id=oldest.invoice_id,
        number=oldest.number,
        amount_due_minor=oldest.amount_due_minor,
        currency=oldest.currency,
        due_on=oldest.due_on,
        others=max(0, int(row.overdue_count) - 1),
    )


def unpaid_invoice_from(row, *, today: date) -> UnpaidInvoice | None:
    """The unpaid invoice not yet overdue that a row annotated with `billing_nudge_annotations` carries, or None
    (also None when an invoice is overdue: the overdue banner speaks for it)."""
    oldest = _oldest_unpaid(row)
    return oldest if oldest is not None and oldest.due_on >= today else None


def exemption_expiring_from(row) -> date | None:
    """The expiry date a row annotated with `billing_nudge_annotations` carries, or None."""
    value = row.exemption_expiring_on
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def billing_nudges_for_customer(*, customer_id: int, today: date):
    """One Customer row annotated with `billing_nudge_annotations`, for a dashboard with no subscription row to
    annotate; None if there is no such customer."""
    return (
        Customer.objects.filter(pk=customer_id)
        .annotate(**billing_nudge_annotations(customer_ref="pk", today=today))
        .first()
    )
