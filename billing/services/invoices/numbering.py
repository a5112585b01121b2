"""Gapless invoice numbers: one sequence row per series, locked while a number is taken."""

from datetime import datetime, timedelta

from billing.models import (
    BillingProfile,
    Invoice,
    InvoiceNumberSequence,
)
from subscriptions.clock import utc_date


def _series(prefix: str, when: datetime) -> str:
    return f"{prefix}-{when.year}"


def _sequence_locked(series: str) -> InvoiceNumberSequence:
    """The sequence row of `series`, locked (SELECT … FOR UPDATE) until the caller's transaction ends. One query
    once the series exists (every number but a year's first)."""
    sequence = InvoiceNumberSequence.objects.select_for_update().filter(series=series).first()
    if sequence is not None:
        return sequence
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
