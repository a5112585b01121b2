"""Billing part of the demo seed (called by portal's seed_demo; idempotent — a second run changes nothing).

Tax rates (CA, NY, TX sales tax on SaaS; DE VAT), billing profiles for the four demo customers, a few months of
invoice history produced by the real billing run month by month, Initech with a valid German VAT ID (reverse
charge), Umbrella with an unpaid overdue invoice, and Globex with a tax exemption awaiting review.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q

from billing.models import (
    BillingProfile,
    ExemptionStatus,
    Invoice,
    InvoiceNumberSequence,
    InvoiceStatus,
    TaxExemption,
    TaxRate,
)
from billing.services.billing_run import billing_run
from billing.services.documents import html_to_pdf, invoice_render_pdf
from billing.services.exemptions import tax_exemption_submit
from billing.services.invoices import invoice_apply_payment, invoice_approve_and_issue
from billing.services.profiles import billing_profile_update
from subscriptions import clock
from subscriptions.clock import utc_date
from subscriptions.models import Customer, User
from subscriptions.periods import add_months
from subscriptions.services.audit import audit_occurred_at

TAX_RATES = [
    # country, region, name, rate, categories
    ("US", "CA", "CA sales tax", "7.25", ["saas"]),
    ("US", "NY", "NY sales tax", "8.875", ["saas"]),
    ("US", "TX", "TX sales tax", "6.25", ["saas"]),
    ("DE", "", "VAT DE", "19", ["saas", "services"]),
]
PROFILES = {
    "Acme Inc": {
        "address_line1": "500 Howard Street",
        "city": "San Francisco",
        "region": "CA",
        "postal_code": "94105",
        "country": "US",
        "billing_emails": ["ap@acme.test"],
        "change_billing_mode": "invoice_now",
    },
    "Globex Corp": {
        "address_line1": "1 Globex Plaza",
        "address_line2": "Floor 42",
        "city": "New York",
        "region": "NY",
        "postal_code": "10001",
        "country": "US",
        "billing_emails": ["owner@globex.test"],
        "standing_po_number": "PO-GLX-7731",
        "requires_po": True,
        "payment_terms_days": 45,
        "change_billing_mode": "next_invoice",
    },
    "Initech GmbH": {
        "address_line1": "Friedrichstraße 100",
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
        "billing_emails": ["owner@initech.test"],
        "tax_id": "DE136695976",  # valid checksum (python-stdnum): reverse charge applies
        "currency": "EUR",
        "invoice_language": "de",
        "change_billing_mode": "next_invoice",
    },
    "Umbrella LLC": {
        "address_line1": "2 Raccoon Way",
        "city": "Austin",
        "region": "TX",
        "postal_code": "73301",
        "country": "US",
        "billing_emails": ["owner@umbrella.test"],
        "change_billing_mode": "invoice_now",
    },
}


def _globex_certificate_expiry(today: date) -> date:
    """Globex's certificate is valid until (its last valid day) a 30 June more than a year after the seed day, so
    the demo loads on any date and the certificate never lapses within the demo's first year."""
    return date(today.year + 2, 6, 30)


def _certificate_pdf(expires_on: date) -> bytes:

    return html_to_pdf(
        "<h1>New York State — Resale Certificate (ST-120)</h1><p>Purchaser: Globex Corporation</p>"
        f"<p>Certificate number NY-ST120-558812 · valid until {expires_on.isoformat()}</p><p>Signed: G. Owner</p>"
    )


def _renumber_in_their_own_series(invoice_ids: list[int]) -> list[int]:
    """Give backdated demo invoices the numbers of the series of their (new) issue date.

    The billing run issued them today, so an invoice backdated from January into December carries the new year's
    number. Each affected series is renumbered gaplessly in issue order and its sequence row set to match — only
    when every invoice of those series belongs to this demo seed (a database holding other invoices is left alone).
    Returns the ids whose number changed (their stored PDFs are rendered again)."""
    moved = Invoice.objects.filter(pk__in=invoice_ids).exclude(number__isnull=True)
    series = {i.series for i in moved} | {_series_of(i.issued_at) for i in moved}
    if all(i.series == _series_of(i.issued_at) for i in moved):
        return []
    affected = list(
        Invoice.objects.filter(number__isnull=False, issued_at__isnull=False)
        .filter(Q(series__in=series) | Q(issued_at__year__in=[int(s.rsplit("-", 1)[1]) for s in series]))
        .order_by("issued_at", "pk")
    )
    if any(i.pk not in set(invoice_ids) for i in affected):
        return []
    changed = []
    with transaction.atomic():
        # Park the numbers first: `number` is unique, and two invoices may swap theirs.
        for invoice in affected:
            Invoice.objects.filter(pk=invoice.pk).update(number=f"renumbering-{invoice.pk}")
        counters: dict[str, int] = {}
        for invoice in affected:
            target = _series_of(invoice.issued_at)
            counters[target] = counters.get(target, 0) + 1
            number = f"{target}-{counters[target]:06d}"
            if number != invoice.number:
                changed.append(invoice.pk)
            Invoice.objects.filter(pk=invoice.pk).update(series=target, number=number)
        for name in series:
            InvoiceNumberSequence.objects.update_or_create(series=name, defaults={"last_value": counters.get(name, 0)})
    return changed


def _series_of(issued_at: datetime) -> str:
    prefix = getattr(settings, "INVOICE_NUMBER_PREFIX", "INV")
    return f"{prefix}-{issued_at.astimezone(UTC).year}"


def _rerender_pdfs(invoice_ids: list[int]) -> None:
    """A PDF rendered before the demo backdated (and renumbered) its invoice shows the wrong number and date."""

    for invoice in Invoice.objects.filter(pk__in=invoice_ids).exclude(pdf_sha256=""):
        if invoice.pdf_file:
            invoice.pdf_file.delete(save=False)
        Invoice.objects.filter(pk=invoice.pk).update(pdf_file="", pdf_sha256="", pdf_rendered_at=None)
        invoice_render_pdf(invoice_id=invoice.pk)


def seed_billing(*, history_start: datetime, stdout=None) -> None:
    for country, region, name, rate, categories in TAX_RATES:
        TaxRate.objects.get_or_create(
            country=country,
            region=region,
            name=name,
            defaults={"rate": Decimal(rate), "tax_categories": categories, "effective_from": date(2020, 1, 1)},
        )
    customers = {c.name: c for c in Customer.objects.filter(name__in=PROFILES)}
    for name, fields in PROFILES.items():
        customer = customers.get(name)
        if customer is not None and not BillingProfile.objects.filter(customer=customer).exists():
            with audit_occurred_at(history_start):  # entered when the customer signed up, months ago
                billing_profile_update(customer=customer, legal_name=customer.legal_name or customer.name, **fields)
    staff = User.objects.filter(email="billing@continuum.test").first()

    # The billing run, month by month, as if it had been running all along, and a last one at `now`, so every demo
    # subscription ends up in the period that contains today: a change made in the portal right after `make run` must
    # not hit "being renewed". The run is idempotent, so re-seeding (even months later) only catches up.
    now = clock.now()
    month = history_start
    run_times = []
    while month <= now:
        run_times.append(min(month + timedelta(hours=1), now))
        month = add_months(month, 1)
    run_times.append(now)
    for as_of in run_times:
        # What a run does happens at its `as_of` in the customers' activity (renewals, invoices), not at seed time.
        with audit_occurred_at(as_of):
            billing_run(as_of=as_of)
            for invoice in Invoice.objects.filter(status=InvoiceStatus.HELD, customer__in=customers.values()):
                if {r["code"] for r in invoice.hold_reasons} == {"first_invoice"} and staff is not None:
                    invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff, note="Demo: first invoice reviewed")

    # Demo time travel: date each historic invoice as issued at its period start (due dates follow the terms), so
    # the history reads naturally and Umbrella has an overdue invoice. Only demo data is ever backdated; a backdated
    # invoice takes its number in the series of its new issue date.
    backdated = []
    for invoice in Invoice.objects.filter(customer__in=customers.values(), issued_at__isnull=False).select_related(
        "customer__billing_profile"
    ):
        if invoice.period_start and invoice.issued_at > invoice.period_start:
            terms = invoice.customer.billing_profile.payment_terms_days
            Invoice.objects.filter(pk=invoice.pk).update(
                issued_at=invoice.period_start, due_on=utc_date(invoice.period_start + timedelta(days=terms))
            )
            backdated.append(invoice.pk)
    if backdated:
        renumbered = _renumber_in_their_own_series(backdated)
        _rerender_pdfs(sorted(set(renumbered) | set(backdated)))

    # Everyone paid their past invoices, except Umbrella: its latest invoice already past its due date stays unpaid,
    # so it is overdue on every day of the year (with net-30 terms, last month's invoice is not yet due on the 1st or
    # on 1–3 March: then the one before it is the overdue one). This month's invoices are still open for everyone.
    today = clock.today()
    current_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    umbrella = customers.get("Umbrella LLC")
    umbrella_overdue = (
        Invoice.objects.filter(customer=umbrella, status=InvoiceStatus.OPEN, due_on__lt=today)
        .order_by("-due_on", "-pk")
        .first()
    )
    for invoice in Invoice.objects.filter(
        customer__in=customers.values(), status=InvoiceStatus.OPEN, period_start__lt=current_month
    ).order_by("period_start", "pk"):
        if umbrella_overdue is None or invoice.pk != umbrella_overdue.pk:
            invoice_apply_payment(
                invoice_id=invoice.pk,
                amount_minor=invoice.amount_due_minor,
                paid_at=invoice.issued_at + timedelta(days=12),
                actor=staff,
                reference="Demo: bank transfer",
            )

    globex = customers.get("Globex Corp")
    if globex is not None and not TaxExemption.objects.filter(customer=globex).exists():
        expires_on = _globex_certificate_expiry(clock.today())
        tax_exemption_submit(
            customer=globex,
            jurisdictions=["US-NY"],
            exemption_type="resale",
            certificate_number="NY-ST120-558812",
            expires_on=expires_on,
            reason="We resell Continuum seats to our subsidiaries.",
            certificate=ContentFile(_certificate_pdf(expires_on), name="globex-st120.pdf"),
            actor=User.objects.filter(email="owner@globex.test").first(),
        )
    if stdout is not None:
        pending = TaxExemption.objects.filter(status=ExemptionStatus.SUBMITTED).count()
        stdout.write(
            f"Billing demo: {Invoice.objects.filter(issued_at__isnull=False).count()} issued invoices, "
            f"{pending} tax exemption(s) awaiting review."
        )
