"""Drafting and editing invoices: draft lines, adding/changing/removing lines, the PO number, and recomputing
tax and copied details from the live billing profile, rates and exemptions (only while editable).
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.exceptions import (
    StaleVersion,
)
from billing.models import (
    EDITABLE_STATUSES,
    BillingProfile,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    InvoiceStatusChange,
    InvoiceTaxLine,
    LineKind,
)
from billing.services.invoices.state import _assert_editable, invoice_lock
from billing.services.profiles import e_invoice_applies
from billing.services.tax import TaxResult, tax_compute, tax_context_for
from subscriptions.clock import utc_date
from subscriptions.models import (
    Customer,
    Subscription,
    SubscriptionChange,
    User,
)
from subscriptions.services.audit import audit_record


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


# What a line carries from one form to the next (a draft line, an invoice line, a pending item) under the same name.
_LINE_FIELDS = (
    "description",
    "sku_code",
    "period_start",
    "period_end",
    "quantity",
    "unit_amount_minor",
    "amount_minor",
    "is_proration",
    "tax_category",
    "subscription_change_id",
    "discount_id",
)


def line_fields(line) -> dict:
    """The fields of `line` (a DraftLine, InvoiceLine or PendingInvoiceItem) that every form of a line shares, by
    name: `InvoiceLine(kind=..., **line_fields(item))`. The kind and the position are the caller's."""
    return {name: getattr(line, name) for name in _LINE_FIELDS}


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
    changed = [line for line in lines if before[line.pk] != (line.tax_rate, line.tax_name)]
    if changed:  # one statement; the invoice is locked and was checked editable above (the lines' own save guard)
        InvoiceLine.objects.bulk_update(changed, ["tax_rate", "tax_name"])
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
            **{**line_fields(line), "description": line.description[:300], "amount_minor": line.amount},
        )
        for index, line in enumerate(lines)
    )


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
    recompute: bool = True,
) -> Invoice:
    """Create a draft invoice with `lines`, tax computed. Does not run the checks or issue (see invoice_finalize).
    `recompute=False`: the caller finalizes the draft in the same transaction (`invoice_finalize` recomputes tax and
    copied details first), so computing them here as well would do it twice; totals are zero until then."""
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
        if recompute:
            _recompute(invoice)
        InvoiceStatusChange.objects.create(invoice=invoice, from_status="", to_status=InvoiceStatus.DRAFT, actor=actor)
    return invoice


def _edit(invoice_id: int, expected_version: int | None) -> Invoice:
    invoice = invoice_lock(invoice_id)
    _assert_editable(invoice)
    if expected_version is not None and invoice.version != expected_version:
        raise StaleVersion("This invoice changed since you opened it; reload and try again.")
    return invoice


def _after_edit(invoice: Invoice, actor: User | None, action: str, summary: str, **changes: dict) -> None:
    """After a staff edit of a draft's lines (under its lock): bump the version, recompute tax, audit the edit
    (`changes`: its `before` and/or `after`)."""
    invoice.version += 1
    _recompute(invoice)
    audit_record(customer=invoice.customer, actor=actor, action=action, obj=invoice, summary=summary, **changes)


def invoice_line_add(
    *, invoice_id: int, line: DraftLine, actor: User | None = None, expected_version: int | None = None
) -> InvoiceLine:
    """Add a line to a draft/held invoice (staff edit); recomputes tax; raises InvoiceImmutable once issued."""
    with transaction.atomic():
        invoice = _edit(invoice_id, expected_version)
        position = (invoice.lines.order_by("-position").values_list("position", flat=True).first() or 0) + 1
        _add_lines(invoice, [line], start_position=position)
        _after_edit(
            invoice,
            actor,
            "invoice.line_added",
            f"Line added to draft invoice #{invoice.pk}: {line.description}",
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
        _after_edit(
            invoice,
            actor,
            "invoice.line_updated",
            f"Line edited on draft invoice #{invoice.pk}: {line.description}",
            before=before,
            after={"description": line.description, "quantity": line.quantity, "amount_minor": line.amount_minor},
        )
    return line


def invoice_line_remove(*, line_id: int, actor: User | None = None, expected_version: int | None = None) -> None:
    with transaction.atomic():
        line = InvoiceLine.objects.get(pk=line_id)
        invoice = _edit(line.invoice_id, expected_version)
        line.delete()
        _after_edit(
            invoice,
            actor,
            "invoice.line_removed",
            f"Line removed from draft invoice #{invoice.pk}: {line.description}",
            before={"description": line.description, "amount_minor": line.amount_minor},
        )


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
