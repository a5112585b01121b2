"""Billing part of the demo seed (called by portal's seed_demo; idempotent — a second run changes nothing).

Tax rates (CA, NY, TX sales tax on SaaS; DE VAT), billing profiles for the four demo customers, a few months of
invoice history produced by the real billing run month by month, Initech with a valid German VAT ID (reverse
charge), Umbrella with an unpaid overdue invoice, and Globex with a tax exemption awaiting review.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.core.files.base import ContentFile
from django.utils import timezone

from billing.models import BillingProfile, ExemptionStatus, Invoice, InvoiceStatus, TaxExemption, TaxRate
from billing.services.billing_run import billing_run
from billing.services.exemptions import tax_exemption_submit
from billing.services.invoices import invoice_apply_payment, invoice_approve_and_issue
from billing.services.profiles import billing_profile_update
from subscriptions.models import Customer, User
from subscriptions.periods import add_months

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


def _certificate_pdf() -> bytes:
    from billing.services.documents import html_to_pdf

    return html_to_pdf(
        "<h1>New York State — Resale Certificate (ST-120)</h1><p>Purchaser: Globex Corporation</p>"
        "<p>Certificate number NY-ST120-558812 · valid until 2028-06-30</p><p>Signed: G. Owner</p>"
    )


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
            billing_profile_update(customer=customer, legal_name=customer.legal_name or customer.name, **fields)
    staff = User.objects.filter(email="billing@continuum.test").first()

    # The billing run, month by month, as if it had been running all along, and a last one at `now`, so every demo
    # subscription ends up in the period that contains today: a change made in the portal right after `make run` must
    # not hit "being renewed". The run is idempotent, so re-seeding (even months later) only catches up.
    now = timezone.now()
    month = history_start
    run_times = []
    while month <= now:
        run_times.append(min(month + timedelta(hours=1), now))
        month = add_months(month, 1)
    run_times.append(now)
    for as_of in run_times:
        billing_run(as_of=as_of)
        for invoice in Invoice.objects.filter(status=InvoiceStatus.HELD, customer__in=customers.values()):
            if {r["code"] for r in invoice.hold_reasons} == {"first_invoice"} and staff is not None:
                invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff, note="Demo: first invoice reviewed")

    # Demo time travel: date each historic invoice as issued at its period start (due dates follow the terms), so
    # the history reads naturally and Umbrella's previous invoice is overdue. Only demo data is ever backdated.
    for invoice in Invoice.objects.filter(customer__in=customers.values(), issued_at__isnull=False).select_related(
        "customer__billing_profile"
    ):
        if invoice.period_start and invoice.issued_at > invoice.period_start:
            terms = invoice.customer.billing_profile.payment_terms_days
            Invoice.objects.filter(pk=invoice.pk).update(
                issued_at=invoice.period_start, due_on=(invoice.period_start + timedelta(days=terms)).date()
            )

    # Everyone paid their past invoices, except Umbrella's last one (overdue); this month's are still open.
    current_month = datetime(now.year, now.month, 1, tzinfo=UTC)
    umbrella = customers.get("Umbrella LLC")
    umbrella_open = (
        Invoice.objects.filter(customer=umbrella, period_start__lt=current_month, issued_at__isnull=False)
        .order_by("-period_start")
        .values_list("pk", flat=True)
        .first()
    )
    for invoice in Invoice.objects.filter(
        customer__in=customers.values(), status=InvoiceStatus.OPEN, period_start__lt=current_month
    ):
        if invoice.pk != umbrella_open:
            invoice_apply_payment(
                invoice_id=invoice.pk,
                amount_minor=invoice.amount_due_minor,
                paid_at=invoice.issued_at + timedelta(days=12),
                actor=staff,
                reference="Demo: bank transfer",
            )

    globex = customers.get("Globex Corp")
    if globex is not None and not TaxExemption.objects.filter(customer=globex).exists():
        tax_exemption_submit(
            customer=globex,
            jurisdictions=["US-NY"],
            exemption_type="resale",
            certificate_number="NY-ST120-558812",
            expires_on=date(2028, 6, 30),
            reason="We resell Continuum seats to our subsidiaries.",
            certificate=ContentFile(_certificate_pdf(), name="globex-st120.pdf"),
            actor=User.objects.filter(email="owner@globex.test").first(),
        )
    if stdout is not None:
        pending = TaxExemption.objects.filter(status=ExemptionStatus.SUBMITTED).count()
        stdout.write(
            f"Billing demo: {Invoice.objects.filter(issued_at__isnull=False).count()} issued invoices, "
            f"{pending} tax exemption(s) awaiting review."
        )
