"""E-invoices in the simulated year (issue 21): every EU e-invoice the year issues validates against the standard's own
rules, and its totals are the invoice's.

- `XRechnungBuyers`, an extension of the year (year.py `hook`): a share of the German business customers are public
  buyers; billing staff record their Leitweg-ID as the buyer reference (BT-10), so their invoices are also handed out
  as XRechnung.
- `einvoices_check`, an invariant (called by invariants.check_all): for each issued invoice and credit note of a
  customer who gets e-invoices (docs/billing-rules.md, "E-invoices": EU billing country, a valid VAT ID, e-invoicing
  not switched off), the Factur-X XML is built from the stored document and validated against the Factur-X EN 16931
  XSD and the EN 16931 Schematron (saxonche), the stored validation record must say valid, the XML parsed back must
  carry the stored totals to the minor unit (BT-106 = Σ BT-131, BT-109 = BT-106 − BT-107 + BT-108,
  BT-112 = BT-109 + BT-110, allowances (BG-20/BG-27) − charges = the discount lines), a credit note must be type 381
  referencing its invoice (BG-3), and a public buyer's XRechnung must pass the EN 16931 and BR-DE rules. A failure
  names the document number and the rules' messages.
"""

from __future__ import annotations

import random
from decimal import Decimal

from django.conf import settings
from lxml import etree
from stdnum.iso7064 import mod_97_10

from billing import einvoice
from billing.exceptions import EInvoiceInvalid
from billing.models import CreditNote, LineKind
from billing.services.einvoices import credit_note_einvoice_xml, invoice_einvoice_xml, invoice_xrechnung_xml
from billing.services.profiles import billing_profile_update
from billing.services.tax import EU_MEMBER_STATES
from portal.simulation.violations import Violation

PUBLIC_BUYER_RATE = 0.3  # of the German business customers: a public buyer with a Leitweg-ID
NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
    "udt": "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100",
}
_SETTLEMENT = "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeSettlement"
_SUMMATION = f"{_SETTLEMENT}/ram:SpecifiedTradeSettlementHeaderMonetarySummation"
_LINES = "rsm:SupplyChainTradeTransaction/ram:IncludedSupplyChainTradeLineItem"


def leitweg_id(index: int) -> str:
    """A Leitweg-ID (coarse–fine–check): 991 (a test authority), the customer's number, ISO 7064 MOD 97-10 digits."""
    body = f"991-{index:05d}"
    return f"{body}-{mod_97_10.calc_check_digits(body.replace('-', ''))}"


class XRechnungBuyers:
    """Extension of the year: some German business customers are public buyers who need XRechnung."""

    def __init__(self, seed: int):
        self.rng = random.Random(f"xrechnung-{seed}")
        self.public_buyers: set[int] = set()

    def after_signup(self, sim, c, result) -> None:
        if c.kind == "eu_vat" and c.country == "DE" and self.rng.random() < PUBLIC_BUYER_RATE:
            billing_profile_update(customer=result.customer, actor=sim.clerk, buyer_reference=leitweg_id(c.index))
            self.public_buyers.add(result.customer.pk)

    def figures(self, sim) -> dict:
        return {"xrechnung_buyers": len(self.public_buyers)}


def _digits(currency: str) -> int:
    return 0 if currency in ("JPY", "KRW", "HUF") else 2


def _minor(value: str | None, currency: str) -> int:
    return int(Decimal(value or "0").scaleb(_digits(currency)))


def _allowances(parent, currency: str) -> int:
    """Allowances minus charges among `parent`'s SpecifiedTradeAllowanceCharge children, in minor units."""
    net = 0
    for element in parent.findall("ram:SpecifiedTradeAllowanceCharge", NS):
        amount = _minor(element.findtext("ram:ActualAmount", namespaces=NS), currency)
        is_charge = element.findtext("ram:ChargeIndicator/udt:Indicator", namespaces=NS) == "true"
        net += -amount if is_charge else amount
    return net


def xml_totals(xml: bytes, currency: str) -> dict:
    """The figures a receiving system books, read back from the CII XML."""
    root = etree.fromstring(xml)
    summation = root.find(_SUMMATION, NS)
    totals = {
        name: _minor(summation.findtext(f"ram:{tag}", namespaces=NS), currency)
        for name, tag in (
            ("line_total", "LineTotalAmount"),
            ("charge_total", "ChargeTotalAmount"),
            ("allowance_total", "AllowanceTotalAmount"),
            ("tax_basis", "TaxBasisTotalAmount"),
            ("tax_total", "TaxTotalAmount"),
            ("grand_total", "GrandTotalAmount"),
        )
    }
    line_nets, line_allowances = 0, 0
    for item in root.findall(_LINES, NS):
        settlement = item.find("ram:SpecifiedLineTradeSettlement", NS)
        line_nets += _minor(
            settlement.findtext("ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount", namespaces=NS),
            currency,
        )
        line_allowances += _allowances(settlement, currency)
    totals["line_nets"] = line_nets
    totals["allowances_net"] = line_allowances + _allowances(root.find(_SETTLEMENT, NS), currency)
    totals["type_code"] = root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=NS)
    totals["preceding"] = root.findtext(
        f"{_SETTLEMENT}/ram:InvoiceReferencedDocument/ram:IssuerAssignedID", namespaces=NS
    )
    return totals


def _messages(result: einvoice.ValidationResult) -> str:
    return "; ".join(einvoice.hold_messages(result, limit=10))


def _gets_einvoices(invoice, profile) -> bool:
    """The documented rule, on what the invoice froze: EU billing country, the profile's valid VAT ID on the invoice,
    e-invoicing on for the installation and the customer."""
    if not getattr(settings, "E_INVOICING_ENABLED", False) or profile is None or not profile.e_invoicing:
        return False
    vat_ids = {t if isinstance(t, str) else t.get("value", "") for t in invoice.customer_tax_ids or []}
    return (
        invoice.billing_country in EU_MEMBER_STATES
        and profile.tax_id_valid
        and bool(profile.tax_id)
        and profile.tax_id in vat_ids
    )


def _totals_problems(totals: dict, *, subtotal: int, tax: int, total: int, discount: int) -> list[str]:
    problems = []
    if totals["line_total"] != totals["line_nets"]:
        problems.append(f"BT-106 {totals['line_total']} ≠ Σ BT-131 {totals['line_nets']}")
    if totals["tax_basis"] != totals["line_total"] - totals["allowance_total"] + totals["charge_total"]:
        problems.append("BT-109 ≠ BT-106 − BT-107 + BT-108")
    if totals["grand_total"] != totals["tax_basis"] + totals["tax_total"]:
        problems.append("BT-112 ≠ BT-109 + BT-110")
    stored = (subtotal, tax, total)
    read = (totals["tax_basis"], totals["tax_total"], totals["grand_total"])
    if read != stored:
        problems.append(f"XML totals (BT-109, BT-110, BT-112) {read} ≠ stored {stored}")
    if totals["allowances_net"] != -discount:
        problems.append(f"allowances − charges (BG-20/BG-27) {totals['allowances_net']} ≠ discount lines {-discount}")
    return problems


def einvoices_check(invoices, profiles) -> list[Violation]:
    """The invariant (module docstring). `invoices`: the issued invoices, lines prefetched; `profiles`: by customer."""
    found: list[Violation] = []
    e_invoiced = []
    for invoice in invoices:
        profile = profiles.get(invoice.customer_id)
        subject = f"invoice {invoice.number} ({invoice.customer.name})"
        if _gets_einvoices(invoice, profile) and not invoice.e_invoice:
            found.append(Violation("e-invoices", subject, "an EU business customer's invoice is not an e-invoice"))
        if not invoice.e_invoice:
            continue
        e_invoiced.append(invoice.pk)
        xml, _ = invoice_einvoice_xml(invoice=invoice)
        result = einvoice.validate_xml(xml)
        if not result.valid:
            found.append(Violation("e-invoices", subject, f"Factur-X invalid: {_messages(result)}"))
            continue
        stored = invoice.e_invoice_validation or {}
        if stored and not stored.get("valid"):
            found.append(Violation("e-invoices", subject, f"stored validation failed: {stored.get('failed')}"))
        discount = sum(line.amount_minor for line in invoice.lines.all() if line.kind == LineKind.DISCOUNT)
        totals = xml_totals(xml, invoice.currency)
        problems = _totals_problems(
            totals, subtotal=invoice.subtotal_minor, tax=invoice.tax_minor, total=invoice.total_minor, discount=discount
        )
        if totals["type_code"] != einvoice.TYPE_INVOICE:
            problems.append(f"type code {totals['type_code']}")
        if problems:
            found.append(Violation("e-invoices", subject, "; ".join(problems)))
        if profile is not None and profile.buyer_reference:
            try:
                invoice_xrechnung_xml(invoice=invoice)
            except EInvoiceInvalid as invalid:
                found.append(Violation("e-invoices", subject, f"XRechnung invalid: {invalid}"))
    for note in (
        CreditNote.objects.filter(invoice_id__in=e_invoiced)
        .select_related("invoice", "customer")
        .prefetch_related("lines")
        .order_by("id")
    ):
        subject = f"credit note {note.number} of invoice {note.invoice.number}"
        xml, _ = credit_note_einvoice_xml(credit_note=note)
        result = einvoice.validate_xml(xml)
        if not result.valid:
            found.append(Violation("e-invoices", subject, f"Factur-X invalid: {_messages(result)}"))
            continue
        totals = xml_totals(xml, note.currency)
        problems = _totals_problems(
            totals, subtotal=note.subtotal_minor, tax=note.tax_minor, total=note.total_minor, discount=0
        )
        if totals["type_code"] != einvoice.TYPE_CREDIT_NOTE or totals["preceding"] != note.invoice.number:
            problems.append(f"type {totals['type_code']} referencing {totals['preceding']} (BG-3)")
        if problems:
            found.append(Violation("e-invoices", subject, "; ".join(problems)))
    return found


def einvoice_figures(invoices) -> dict:
    e_invoiced = [i.pk for i in invoices if i.e_invoice]
    return {
        "e_invoices": len(e_invoiced),
        "e_invoice_credit_notes": CreditNote.objects.filter(invoice_id__in=e_invoiced).count(),
    }
