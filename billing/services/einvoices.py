"""EN 16931 e-invoices of issued documents: the pre-issue validation (a failing rule holds the invoice), the Factur-X
PDF/A-3b the document renderer stores, the XML alone and the XRechnung XML (docs/billing-rules.md, "E-invoices").

Which customers get them: `billing.services.profiles.e_invoice_applies`, decided when the invoice is computed and
frozen on it (`Invoice.e_invoice`). A credit note follows the invoice it corrects.
"""

from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.utils import timezone
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

from billing import einvoice
from billing.exceptions import EInvoiceInvalid
from billing.models import BillingProfile, CouponKind, CreditNote, Discount, Invoice


def _pending_number(now: datetime) -> str:
    # The number is drawn only once every check passed; the rules need one, and only its presence matters to them.
    return f"{getattr(settings, 'INVOICE_NUMBER_PREFIX', 'INV')}-{now.year}-PENDING"


def _discount_percents(lines) -> dict:
    """{discount id: the coupon's percentage} for the percentage discounts among `lines` (BT-138); one query, and
    none for an invoice without discounts."""
    ids = {line.discount_id for line in lines if getattr(line, "discount_id", None)}
    if not ids:
        return {}
    return dict(
        Discount.objects.filter(pk__in=ids, coupon__kind=CouponKind.PERCENT).values_list("pk", "coupon__percent_off")
    )


def _invoice_document(*, invoice: Invoice, lines=None, tax_lines=None, **overrides) -> einvoice.Document:
    """The EN 16931 view of `invoice`: of the given in-memory rows (pre-issue check), else of its stored ones."""
    lines = list(invoice.lines.all()) if lines is None else lines
    tax_lines = list(invoice.tax_lines.all()) if tax_lines is None else tax_lines
    return einvoice.invoice_document(
        invoice=invoice, lines=lines, tax_lines=tax_lines, discount_percents=_discount_percents(lines), **overrides
    )


def invoice_einvoice_problems(
    *, invoice: Invoice, lines, tax_lines, profile: BillingProfile | None, now: datetime
) -> list[str]:
    """Hold messages ("e-invoice invalid: BR-… <rule>") for the e-invoice `invoice` is about to become, from the
    in-memory rows just recomputed (no query, but one for a discounted invoice's coupon percentages); empty when it
    is not e-invoiced or passes the XSD and every rule."""
    if not invoice.e_invoice:
        return []
    terms = profile.payment_terms_days if profile is not None else 30
    document = _invoice_document(
        invoice=invoice,
        lines=lines,
        tax_lines=tax_lines,
        number=invoice.number or _pending_number(now),
        issued_on=(invoice.issued_at or now).date(),
        due_on=invoice.due_on or (now + timedelta(days=terms)).date(),
    )
    messages = einvoice.hold_messages(einvoice.validate_xml(einvoice.build_xml(document)))
    iban_problem = _iban_problem(document.iban)
    if iban_problem:  # the rules check that an account is there, not that it exists
        messages.append(f"e-invoice invalid: BR-61 the seller's IBAN (SELLER_IBAN) {iban_problem}")
    return messages


@lru_cache(maxsize=8)
def _iban_problem(iban: str) -> str:
    if not iban:
        return ""
    try:
        IBAN(iban)
    except SchwiftyException as exc:
        return f"is not valid: {exc}."
    return ""


def _validation_record(result: einvoice.ValidationResult) -> dict:
    return {**result.as_dict(), "checked_at": timezone.now().isoformat(), "profile": "Factur-X 1.0 EN 16931"}


def invoice_einvoice_xml(*, invoice: Invoice) -> tuple[bytes, einvoice.Document]:
    """The Factur-X (CII, EN 16931) XML of an issued invoice, from its frozen data."""
    document = _invoice_document(invoice=invoice)
    return einvoice.build_xml(document), document


def credit_note_einvoice_xml(*, credit_note: CreditNote) -> tuple[bytes, einvoice.Document]:
    document = einvoice.credit_note_document(credit_note=credit_note, lines=list(credit_note.lines.all()))
    return einvoice.build_xml(document), document


def _hybrid(pdf: bytes, xml: bytes, document: einvoice.Document, *, lang: str) -> tuple[bytes, dict]:
    result = einvoice.validate_xml(xml)
    record = _validation_record(result)
    if not result.valid:
        raise EInvoiceInvalid(" ".join(einvoice.hold_messages(result)), validation=record)
    return einvoice.embed_in_pdf(pdf=pdf, xml=xml, document=document, lang=lang), record


def invoice_einvoice_pdf(*, invoice: Invoice, pdf: bytes, lang: str = "en") -> tuple[bytes, dict]:
    """`pdf` (rendered as PDF/A-3b) with the invoice's validated XML embedded; returns it and the validation record.
    Raises EInvoiceInvalid (carrying the record) rather than produce a file that fails the standard."""
    xml, document = invoice_einvoice_xml(invoice=invoice)
    return _hybrid(pdf, xml, document, lang=lang)


def credit_note_einvoice_pdf(*, credit_note: CreditNote, pdf: bytes, lang: str = "en") -> tuple[bytes, dict]:
    xml, document = credit_note_einvoice_xml(credit_note=credit_note)
    return _hybrid(pdf, xml, document, lang=lang)


def invoice_xrechnung_xml(*, invoice: Invoice) -> bytes:
    """The invoice as XRechnung 3.0 (CII syntax): the same EN 16931 content with the XRechnung guideline, the
    seller contact and both electronic addresses XRechnung requires; the buyer reference (BT-10) is the profile's
    Leitweg-ID, else the PO number. Validated against the EN 16931 rules and XRechnung's BR-DE rules before it is
    handed out; raises EInvoiceInvalid ("e-invoice invalid: BR-DE-… …") rather than hand out a failing file."""
    document = _invoice_document(invoice=invoice)
    if not document.buyer_reference:
        document.buyer_reference = invoice.number or ""
    xml = einvoice.build_xml(document, guideline=einvoice.XRECHNUNG_GUIDELINE)
    # The Factur-X Schematron encodes the EN 16931 rules but admits only Factur-X guideline IDs, so the identical
    # content is checked under the EN 16931 ID; XRechnung's own national rules (BR-DE-*) are checked explicitly
    # (einvoice.xrechnung_problems: KoSIT's Schematron is not available offline; docs/decisions.md "XRechnung").
    result = einvoice.validate_xml(
        xml.replace(einvoice.XRECHNUNG_GUIDELINE.encode(), einvoice.EN16931_GUIDELINE.encode(), 1)
    )
    if result.valid:
        result.failed.extend(einvoice.xrechnung_problems(xml))
    if not result.valid:
        raise EInvoiceInvalid(" ".join(einvoice.hold_messages(result)), validation=_validation_record(result))
    return xml
