"""The invariants of a simulated year, checked on what the database holds afterwards.

Each check is written from the documented rule (docs/billing-rules.md), not by calling the service that applies it,
so a service that gets a rule wrong is caught rather than agreed with. A violation names the invoice or subscription
and the facts.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from billing.models import (
    ISSUED_STATUSES,
    BillingProfile,
    CreditNote,
    ExemptionStatus,
    ExemptionStatusChange,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
    Payment,
    TaxExemption,
)
from billing.services.tax import EU_MEMBER_STATES
from portal.simulation.cards import card_violations
from portal.simulation.clerk import rebill_violations
from portal.simulation.einvoices import einvoices_check
from portal.simulation.promotions import discounts_check
from portal.simulation.violations import Violation
from portal.simulation.year import invoice_snapshot
from subscriptions.models import Entitlement, SeatLedgerEntry, Subscription

CURRENCY_DIGITS = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}


def half_up(value: Decimal) -> int:
    """Round to a whole minor unit, half away from zero (a credit mirrors the charge)."""
    sign = -1 if value < 0 else 1
    return sign * int(abs(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def add_months_anchored(anchor: datetime, months: int) -> datetime:
    """The anchor rule: `months` after the anchor, on the anchor's day or the month's last day if shorter."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def boundaries(anchor: datetime, interval: str, until: datetime) -> list[datetime]:
    step = 12 if interval == "year" else 1
    result, k = [], 0
    while True:
        moment = add_months_anchored(anchor, k * step)
        result.append(moment)
        if moment > until:
            return result
        k += 1


def check_all(*, issued_snapshots: dict[int, tuple], stripe=None) -> list[Violation]:

    violations: list[Violation] = []
    invoices = list(
        Invoice.objects.filter(status__in=ISSUED_STATUSES)
        .select_related("customer", "subscription")
        .prefetch_related("lines", "tax_lines")
        .order_by("id")
    )
    profiles = {p.customer_id: p for p in BillingProfile.objects.all()}
    violations += _tax(invoices, profiles)
    violations += _holds(invoices, profiles)
    violations += _periods(invoices)
    violations += _seats()
    violations += _numbering()
    violations += _money(invoices)
    violations += einvoices_check(invoices, profiles)  # issue 21
    violations += discounts_check(invoices)  # issue 22
    violations += rebill_violations(Violation)  # void and re-bill by the clerk (clerk.py)
    violations += card_violations(Violation, stripe)  # card payments, refunds and webhooks (cards.py)
    for invoice in invoices:
        before = issued_snapshots.get(invoice.pk)
        if before is not None and before != invoice_snapshot(invoice):
            violations.append(Violation("numbering", f"invoice {invoice.number}", "changed after it was issued"))
    return violations


# 1. Tax --------------------------------------------------------------------------------------------------------------
def _exempt_at(history: dict, exemptions: list, *, jurisdiction: tuple[str, str], when: datetime, tax_day) -> bool:
    """Was an approved certificate covering the jurisdiction in force when the invoice was issued? The date printed
    on a certificate is its last valid day (docs/billing-rules.md)."""
    country, region = jurisdiction
    for exemption in exemptions:
        codes = {j.upper() for j in exemption.jurisdictions}
        if country not in codes and f"{country}-{region}" not in codes:
            continue
        if tax_day > exemption.expires_on:
            continue
        status = None
        for change in history.get(exemption.pk, []):
            if change.created_at <= when:
                status = change.to_status
        if status == ExemptionStatus.APPROVED:
            return True
    return False


def _tax(invoices, profiles) -> list[Violation]:
    found = []
    exemptions = defaultdict(list)
    for exemption in TaxExemption.objects.all():
        exemptions[exemption.customer_id].append(exemption)
    history = defaultdict(list)
    for change in ExemptionStatusChange.objects.order_by("created_at", "id"):
        history[change.exemption_id].append(change)
    for invoice in invoices:
        subject = f"invoice {invoice.number} ({invoice.customer.name})"
        tax_day = (invoice.period_start or invoice.issued_at).date()
        jurisdiction = (invoice.billing_country, invoice.billing_region)
        if invoice.tax_minor and _exempt_at(
            history, exemptions[invoice.customer_id], jurisdiction=jurisdiction, when=invoice.issued_at, tax_day=tax_day
        ):
            found.append(
                Violation("tax", subject, f"carries tax {invoice.tax_minor} although exempt in {jurisdiction}")
            )
        vat_ids = [t for t in (invoice.customer_tax_ids or []) if isinstance(t, str)] or [
            t.get("value", "") for t in (invoice.customer_tax_ids or []) if isinstance(t, dict)
        ]
        if invoice.billing_country in EU_MEMBER_STATES and any(v[:2] == invoice.billing_country for v in vat_ids):
            profile = profiles.get(invoice.customer_id)
            if profile is not None and profile.tax_id_valid and not invoice.reverse_charge:
                found.append(Violation("tax", subject, f"EU business with VAT ID {vat_ids} not reverse-charged"))
        if invoice.reverse_charge and (invoice.tax_minor or not invoice.reverse_charge_wording):
            found.append(Violation("tax", subject, "reverse charge with tax or without its wording"))
        # Tax per rate = (net of the lines it applies to) × rate, rounded once, half-up.
        total_tax = 0
        for tax_line in invoice.tax_lines.all():
            expected = half_up(Decimal(tax_line.taxable_amount_minor) * tax_line.rate / 100)
            if expected != tax_line.tax_amount_minor:
                found.append(
                    Violation("tax", subject, f"{tax_line.name}: {tax_line.tax_amount_minor} ≠ rounded {expected}")
                )
            taxable = sum(
                line.amount_minor
                for line in invoice.lines.all()
                if line.tax_name == tax_line.name and line.tax_rate == tax_line.rate
            )
            if taxable != tax_line.taxable_amount_minor:
                found.append(
                    Violation("tax", subject, f"{tax_line.name}: taxable {tax_line.taxable_amount_minor} ≠ {taxable}")
                )
            total_tax += tax_line.tax_amount_minor
        if total_tax != invoice.tax_minor:
            found.append(Violation("tax", subject, f"tax {invoice.tax_minor} ≠ sum of its rates {total_tax}"))
        if invoice.subtotal_minor + invoice.tax_minor != invoice.total_minor:
            found.append(Violation("tax", subject, "subtotal + tax ≠ total"))
    return found


# 2. Holds ------------------------------------------------------------------------------------------------------------
def _holds(invoices, profiles) -> list[Violation]:
    found = []
    for invoice in invoices:
        subject = f"invoice {invoice.number} ({invoice.customer.name})"
        profile = profiles.get(invoice.customer_id)
        if profile is not None and profile.requires_po and not invoice.po_number:
            found.append(Violation("holds", subject, "issued without the PO number its customer requires"))
        address = [line for line in (invoice.billing_address or []) if line]
        if not invoice.billing_country or len(address) < 2:
            found.append(Violation("holds", subject, f"issued with an incomplete address {address}"))
        if invoice.billing_country == "US" and not invoice.billing_region:
            found.append(Violation("holds", subject, "issued without a US state"))
    return found


# 3. Periods ----------------------------------------------------------------------------------------------------------
def _periods(invoices) -> list[Violation]:
    found = []
    by_subscription = defaultdict(list)
    for invoice in invoices:
        if invoice.kind == InvoiceKind.REGULAR and invoice.subscription_id and invoice.status != InvoiceStatus.VOID:
            by_subscription[invoice.subscription_id].append(invoice)
    subscriptions = Subscription.objects.in_bulk(by_subscription.keys())
    for subscription_id, regular in by_subscription.items():
        subscription = subscriptions[subscription_id]
        regular.sort(key=lambda i: i.period_start)
        subject = f"subscription {subscription_id} ({subscription.interval})"
        anchor = getattr(subscription, "billing_anchor", None) or regular[0].period_start
        expected = set(boundaries(anchor, subscription.interval, regular[-1].period_end))
        seen = set()
        for previous, invoice in zip([None, *regular], regular, strict=False):
            period = (invoice.period_start, invoice.period_end)
            if period in seen:
                found.append(Violation("periods", subject, f"period {period[0]:%Y-%m-%d} billed twice"))
            seen.add(period)
            if previous is not None and previous.period_end != invoice.period_start:
                found.append(
                    Violation(
                        "periods",
                        subject,
                        f"gap or overlap: {previous.period_end:%Y-%m-%d %H:%M} → {invoice.period_start:%Y-%m-%d %H:%M}",
                    )
                )
            if subscription.trial_end is None or invoice.period_start >= subscription.trial_end:
                for moment in period:
                    if moment not in expected and moment != subscription.trial_end:
                        found.append(
                            Violation(
                                "periods",
                                subject,
                                f"boundary {moment:%Y-%m-%d %H:%M} is not on the anchor {anchor:%Y-%m-%d %H:%M}",
                            )
                        )
        # Every proration matches the documented day rule to the minor unit.
        for invoice in [i for i in invoices if i.subscription_id == subscription_id]:
            for line in invoice.lines.all():
                if not line.is_proration or not line.period_start or not line.period_end:
                    continue
                if line.kind == LineKind.DISCOUNT:
                    continue  # a prorated discount follows the discount rule (promotions.discounts_check)
                starts = [b for b in expected | {p[0] for p in seen} if b <= line.period_start]
                if not starts:
                    continue
                start = max(starts)
                days = (line.period_end.date() - start.date()).days
                if days <= 0:
                    continue
                factor = Decimal((line.period_end.date() - line.period_start.date()).days) / Decimal(days)
                want = half_up(Decimal(line.quantity * line.unit_amount_minor) * factor)
                if want != line.amount_minor:
                    found.append(
                        Violation(
                            "periods",
                            f"invoice {invoice.number} line '{line.description}'",
                            f"proration {line.amount_minor} ≠ {line.quantity}×{line.unit_amount_minor}×{factor:.6f}"
                            f" = {want}",
                        )
                    )
    return found


# 4. Seats ------------------------------------------------------------------------------------------------------------
def _seats() -> list[Violation]:
    found = []
    ledger = defaultdict(list)
    for entry in SeatLedgerEntry.objects.order_by("effective_at", "id"):
        ledger[entry.subscription_id].append(entry)
    for subscription in Subscription.objects.all():
        entries = ledger.get(subscription.pk, [])
        if not entries:
            found.append(Violation("seats", f"subscription {subscription.pk}", "no seat ledger"))
            continue
        for previous, entry in zip(entries, entries[1:], strict=False):
            if previous.seats_to != entry.seats_from:
                found.append(
                    Violation("seats", f"subscription {subscription.pk}", f"ledger breaks at {entry.effective_at}")
                )
        if entries[-1].seats_to != subscription.seats:
            found.append(
                Violation(
                    "seats",
                    f"subscription {subscription.pk}",
                    f"ledger says {entries[-1].seats_to}, has {subscription.seats}",
                )
            )
    pending = Entitlement.objects.exclude(state__in=("active", "revoked"))
    for entitlement in pending[:50]:
        found.append(
            Violation(
                "seats",
                f"entitlement {entitlement.feature_key} of customer {entitlement.customer_id}",
                f"not converged: {entitlement.state}, desired {entitlement.desired_value}, applied "
                f"{entitlement.applied_value}",
            )
        )
    return found


# 5. Numbering --------------------------------------------------------------------------------------------------------
def _gapless(kind: str, numbers: list[tuple[str, str]]) -> list[Violation]:
    found = []
    by_series = defaultdict(list)
    for series, number in numbers:
        by_series[series].append(int(number.rsplit("-", 1)[1]))
    for series, values in by_series.items():
        values.sort()
        if values != list(range(1, len(values) + 1)):
            missing = sorted(set(range(1, max(values) + 1)) - set(values))[:10]
            found.append(Violation("numbering", f"{kind} series {series}", f"not gapless (missing {missing})"))
    return found


def _numbering() -> list[Violation]:
    invoices = list(Invoice.objects.exclude(number__isnull=True).values_list("series", "number"))
    notes = list(CreditNote.objects.values_list("series", "number"))
    found = _gapless("invoice", invoices) + _gapless("credit note", notes)
    for note in CreditNote.objects.filter(reason_code=""):
        found.append(Violation("numbering", f"credit note {note.number}", "no reason code"))
    return found


# 6. Money ------------------------------------------------------------------------------------------------------------
def _money(invoices) -> list[Violation]:
    found = []
    paid = defaultdict(int)
    for invoice_id, amount in Payment.objects.filter(status="succeeded").values_list("invoice_id", "amount_minor"):
        paid[invoice_id] += amount
    credited = defaultdict(int)
    for invoice_id, amount in CreditNote.objects.values_list("invoice_id", "total_minor"):
        credited[invoice_id] += amount
    for invoice in invoices:
        subject = f"invoice {invoice.number}"
        if invoice.amount_credited_minor != credited[invoice.pk]:
            found.append(
                Violation("money", subject, f"credited {invoice.amount_credited_minor} ≠ notes {credited[invoice.pk]}")
            )
        if invoice.status == InvoiceStatus.PAID:
            settled = invoice.amount_paid_minor + invoice.amount_credited_minor
            if settled < invoice.total_minor:
                found.append(Violation("money", subject, f"paid but settled {settled} < total {invoice.total_minor}"))
        if invoice.amount_due_minor != max(
            0, invoice.total_minor - invoice.amount_paid_minor - invoice.amount_credited_minor
        ) and invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
            found.append(Violation("money", subject, "amount due ≠ total − paid − credited"))
        if paid[invoice.pk] and paid[invoice.pk] != invoice.amount_paid_minor:
            found.append(Violation("money", subject, f"paid {invoice.amount_paid_minor} ≠ payments {paid[invoice.pk]}"))
    return found
