"""Small builders for back-office tests."""

from subscriptions.models import Customer, Package, Subscription
from subscriptions.services.subscriptions import subscription_create
from tests.clock import in_years, month_start
from tests.factories import CustomerFactory, MembershipFactory, UserFactory, priced_package

EXPIRES = in_years(3)  # a certificate's last valid day, years from today (tests/clock.py)


def customer_with_subscription(*, name: str | None = None, seats: int = 5, members: int = 1) -> Customer:
    kwargs = {"name": name} if name else {}
    customer = CustomerFactory(**kwargs)
    owner = None
    for _ in range(members):
        membership = MembershipFactory(customer=customer, user=UserFactory())
        owner = owner or membership.user
    package = Package.objects.filter(slug="team").first() or priced_package(slug="team")
    subscription_create(
        customer=customer, package=package, interval="month", seats=seats, start=month_start(), actor=owner
    )
    return customer


def live_subscription(customer: Customer) -> Subscription:
    return Subscription.objects.get(customer=customer)


def invoice_for(
    customer: Customer,
    *,
    status: str = "held",
    hold_reasons: list[dict] | None = None,
    lines: list[tuple[str, str, int, int]] = (("Team — flat fee", "PLAT-BASE-M", 1, 10_000),),
    tax_rate: str = "0",
    number: str | None = None,
    created_at=None,
):
    """An invoice built directly from rows (the billing services compute real ones; the admin only displays them)."""
    from decimal import Decimal

    from billing.models import Invoice, InvoiceLine, InvoiceStatusChange, InvoiceTaxLine

    subtotal = sum(quantity * unit for _, _, quantity, unit in lines)
    tax = int((Decimal(subtotal) * Decimal(tax_rate) / 100).quantize(Decimal(1)))
    issued = status in ("open", "paid", "void", "uncollectible") and number is not None
    invoice = Invoice.objects.create(
        customer=customer,
        status="draft",
        currency=customer.currency,
        subtotal_minor=subtotal,
        tax_minor=tax,
        total_minor=subtotal + tax,
        amount_due_minor=subtotal + tax,
        hold_reasons=hold_reasons if hold_reasons is not None else [],
        billing_country=customer.country,
        billing_region=customer.region,
    )
    for position, (description, sku, quantity, unit) in enumerate(lines):
        InvoiceLine.objects.create(
            invoice_id=invoice.pk,
            position=position,
            description=description,
            sku_code=sku,
            quantity=quantity,
            unit_amount_minor=unit,
            amount_minor=quantity * unit,
            tax_rate=Decimal(tax_rate),
            tax_name="CA sales tax" if tax else "",
        )
    if tax:
        InvoiceTaxLine.objects.create(
            invoice_id=invoice.pk,
            name="CA sales tax",
            jurisdiction="US-CA",
            rate=Decimal(tax_rate),
            taxable_amount_minor=subtotal,
            tax_amount_minor=tax,
        )
    # Lines first, then the status: an issued invoice refuses new lines (as it should).
    Invoice.objects.filter(pk=invoice.pk).update(
        status=status, number=number if issued else None, issued_at=month_start() if issued else None
    )
    InvoiceStatusChange.objects.create(invoice=invoice, from_status="", to_status=status)
    invoice.refresh_from_db()
    if created_at is not None:
        Invoice.objects.filter(pk=invoice.pk).update(created_at=created_at)
        InvoiceStatusChange.objects.filter(invoice=invoice).update(created_at=created_at)
        invoice.refresh_from_db()
    return invoice


PDF_BYTES = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def exemption_for(customer: Customer, *, status: str = "submitted", jurisdictions=("US-CA",)):

    from django.core.files.base import ContentFile

    from billing.models import TaxExemption

    exemption = TaxExemption(
        customer=customer,
        jurisdictions=list(jurisdictions),
        exemption_type="resale",
        reason="We resell the licences",
        certificate_number="CA-RESALE-123",
        expires_on=EXPIRES,
        certificate_content_type="application/pdf",
        certificate_size=len(PDF_BYTES),
        certificate_sha256="0" * 64,
        original_filename="resale-certificate.pdf",
        status=status,
    )
    exemption.certificate.save("certificate.pdf", ContentFile(PDF_BYTES), save=False)
    exemption.save()
    return exemption
