"""EN 16931 e-invoices (issue 21): every invoice and credit note of an EU business customer is a Factur-X PDF/A-3b
whose embedded XML passes the Factur-X EN 16931 XSD and the EN 16931 Schematron (0 failed assertions); its totals
are the invoice's stored ones; a failing rule holds the invoice ("e-invoice invalid: BR-…") on the single and the
batch finalize path alike."""

import io
from decimal import Decimal

import pytest
import time_machine
from django.core import mail
from lxml import etree
from pypdf import PdfReader

from billing import einvoice
from billing.checks import seller_einvoice_check, seller_einvoice_problems
from billing.exceptions import EInvoiceInvalid
from billing.models import (
    BillingProfile,
    Coupon,
    CouponDuration,
    CouponKind,
    Discount,
    ExemptionStatus,
    HoldReason,
    Invoice,
    InvoiceStatus,
    LineKind,
    TaxExemption,
)
from billing.services.credit_notes import credit_note_create
from billing.services.documents import (
    credit_note_render_pdf,
    invoice_einvoice_for_customer,
    invoice_render_pdf,
    invoice_send_issued_email,
)
from billing.services.invoices import DraftLine, invoice_draft_create, invoice_finalize, invoices_finalize_batch
from billing.services.profiles import billing_profile_update
from tests.billing.conftest import established
from tests.clock import in_years
from tests.factories import BillingProfileFactory, CustomerFactory, MembershipFactory, TaxRateFactory, UserFactory, utc

pytestmark = pytest.mark.django_db

NS = {
    "rsm": "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100",
    "ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100",
}
NOW = utc(2026, 11, 3, 9)


@pytest.fixture(autouse=True)
def _pinned_now():
    with time_machine.travel(NOW, tick=False):
        yield


def _eu_customer(name="Initech", *, country="DE", tax_id="DE136695976", currency="EUR", **profile):
    customer = CustomerFactory(name=name, legal_name=f"{name} GmbH", country=country, region="", currency=currency)
    BillingProfileFactory(
        customer=customer,
        address_line1="Friedrichstraße 100",
        city="Berlin",
        postal_code="10117",
        region="",
        currency=currency,
        billing_emails=["ap@initech.test"],
    )
    billing_profile_update(customer=customer, tax_id=tax_id, **profile)
    return customer


def _de_vat(rate="19", name="VAT DE", categories=("saas",)):
    return TaxRateFactory(country="DE", region="", name=name, rate=Decimal(rate), tax_categories=list(categories))


def _issue(customer, staff, lines, *, currency="EUR", period=True):
    established(customer, staff)
    draft = invoice_draft_create(
        customer=customer,
        currency=currency,
        lines=lines,
        period_start=utc(2026, 11, 1) if period else None,
        period_end=utc(2026, 12, 1) if period else None,
        po_number="PO-4711",
    )
    invoice = invoice_finalize(invoice_id=draft.pk)
    assert invoice.status == InvoiceStatus.OPEN, invoice.hold_reasons
    return invoice_render_pdf(invoice_id=invoice.pk)


def _team_lines():
    return [
        DraftLine(description="Team plan", unit_amount_minor=10_000),
        DraftLine(description="Additional seats", unit_amount_minor=1_000, quantity=5),
    ]


def _pdf(invoice) -> bytes:
    with invoice.pdf_file.open("rb") as handle:
        return handle.read()


def _xml_of(pdf: bytes) -> etree._Element:
    reader = PdfReader(io.BytesIO(pdf))
    assert list(reader.attachments) == ["factur-x.xml"]
    [xml] = reader.attachments["factur-x.xml"]
    return etree.fromstring(xml)


def _assert_valid(xml: bytes) -> None:
    result = einvoice.validate_xml(xml)
    assert result.xsd_errors == []
    assert result.failed == []  # 0 failed assertions of the EN 16931 Schematron


def _text(root, path) -> str:
    return root.xpath(path, namespaces=NS)[0].text


def _totals(root) -> dict:
    summation = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    return {
        "lines": Decimal(_text(root, summation + "ram:LineTotalAmount")),
        "tax": Decimal(_text(root, summation + "ram:TaxTotalAmount")),
        "grand": Decimal(_text(root, summation + "ram:GrandTotalAmount")),
        "due": Decimal(_text(root, summation + "ram:DuePayableAmount")),
    }


def _expected(document, currency) -> dict:
    return {
        "lines": einvoice.amount(document.subtotal_minor, currency),
        "tax": einvoice.amount(document.tax_minor, currency),
        "grand": einvoice.amount(document.total_minor, currency),
        "due": einvoice.amount(document.total_minor, currency),
    }


def _categories(root) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """The VAT breakdown (BG-23): (category, rate, taxable amount, tax)."""
    return [
        (
            node.findtext("ram:CategoryCode", namespaces=NS),
            Decimal(node.findtext("ram:RateApplicablePercent", namespaces=NS)),
            Decimal(node.findtext("ram:BasisAmount", namespaces=NS)),
            Decimal(node.findtext("ram:CalculatedAmount", namespaces=NS)),
        )
        for node in root.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=NS)
    ]


# --- the cases the standard distinguishes ---------------------------------------------------------------------------


def test_einvoice_standard_vat(settings, staff):
    # given a seller established in Germany and a German business customer: German VAT is charged (category S)
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    invoice = _issue(_eu_customer(), staff, _team_lines())
    # then
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (15_000, 2_850, 17_850)
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    assert _totals(root) == {
        "lines": Decimal("150.00"),
        "tax": Decimal("28.50"),
        "grand": Decimal("178.50"),
        "due": Decimal("178.50"),
    }
    assert _categories(root) == [("S", Decimal("19.00"), Decimal("150.00"), Decimal("28.50"))]
    assert _text(root, "//rsm:ExchangedDocument/ram:ID") == invoice.number
    assert _text(root, "//rsm:ExchangedDocument/ram:TypeCode") == "380"
    assert _text(root, "//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == "DE136695976"
    assert _text(root, "//ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == settings.SELLER["vat_id"]
    assert _text(root, "//ram:BuyerReference") == "PO-4711"
    assert _text(root, "//ram:PayeePartyCreditorFinancialAccount/ram:IBANID") == settings.SELLER["iban"]
    assert _text(root, "//ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/*") == invoice.due_on.strftime("%Y%m%d")
    assert invoice.e_invoice_validation["valid"] is True
    assert invoice.e_invoice_validation["failed"] == []


def test_einvoice_reverse_charge_states_the_exemption_reason(staff):
    # given the default seller (not established in the EU) and a German business customer: reverse charge
    _de_vat()
    invoice = _issue(_eu_customer(), staff, _team_lines())
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    assert invoice.reverse_charge and invoice.tax_minor == 0
    assert _categories(root) == [("AE", Decimal("0.00"), Decimal("150.00"), Decimal("0.00"))]
    [breakdown] = root.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=NS)
    assert breakdown.findtext("ram:ExemptionReason", namespaces=NS) == invoice.reverse_charge_wording
    assert breakdown.findtext("ram:ExemptionReasonCode", namespaces=NS) == "VATEX-EU-AE"
    assert {c.text for c in root.xpath("//ram:SpecifiedLineTradeSettlement//ram:CategoryCode", namespaces=NS)} == {"AE"}
    assert _totals(root) == _expected(invoice, "EUR")


def test_einvoice_exempt_states_the_exemption_wording(settings, staff):
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    customer = _eu_customer()
    TaxExemption.objects.create(
        customer=customer,
        jurisdictions=["DE"],
        exemption_type="nonprofit",
        certificate_number="DE-GEM-2026-17",
        expires_on=in_years(2),
        certificate="exemptions/test.pdf",
        certificate_content_type="application/pdf",
        certificate_size=100,
        certificate_sha256="0" * 64,
        status=ExemptionStatus.APPROVED,
        decided_at=utc(2026, 10, 1),
    )
    invoice = _issue(customer, staff, _team_lines())
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    assert invoice.exemption_wording and invoice.tax_minor == 0
    assert _categories(root) == [("E", Decimal("0.00"), Decimal("150.00"), Decimal("0.00"))]
    assert _text(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:ExemptionReason") == (
        invoice.exemption_wording
    )


def test_einvoice_multiple_rates_break_vat_down_per_rate(settings, staff):
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    _de_vat("7", name="VAT DE reduced", categories=("ebooks",))
    lines = [
        DraftLine(description="Team plan", unit_amount_minor=10_000),
        DraftLine(description="Handbook (e-book)", unit_amount_minor=1_999, quantity=3, tax_category="ebooks"),
        DraftLine(description="Seat change, prorated", unit_amount_minor=1_000, quantity=3, amount_minor=-1_433),
    ]
    invoice = _issue(_eu_customer(), staff, lines)
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    assert sorted(_categories(root)) == [
        ("S", Decimal("7.00"), Decimal("59.97"), Decimal("4.20")),
        ("S", Decimal("19.00"), Decimal("85.67"), Decimal("16.28")),
    ]
    assert _totals(root) == _expected(invoice, "EUR")
    assert invoice.tax_minor == 1_628 + 420


def test_einvoice_zero_decimal_currency(settings, staff):
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    settings.ENABLED_CURRENCIES = [*settings.ENABLED_CURRENCIES, "JPY"]
    _de_vat()
    customer = _eu_customer(currency="JPY")
    invoice = _issue(customer, staff, [DraftLine(description="Team plan", unit_amount_minor=15_000)], currency="JPY")
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    assert _text(root, "//ram:InvoiceCurrencyCode") == "JPY"
    assert _totals(root) == {
        "lines": Decimal("15000"),
        "tax": Decimal("2850"),
        "grand": Decimal("17850"),
        "due": Decimal("17850"),
    }
    assert _text(root, "//ram:GrandTotalAmount") == "17850"  # no invented decimals


def test_einvoice_credit_note_is_type_381_and_references_the_invoice(settings, staff):
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    invoice = _issue(_eu_customer(), staff, _team_lines())
    line = invoice.lines.order_by("position").first()
    note = credit_note_create(
        invoice_id=invoice.pk,
        reason_code="wrong_seat_count",
        lines=[{"invoice_line_id": line.pk, "amount_minor": 2_000, "quantity": 2}],
        actor=staff,
    )
    note = credit_note_render_pdf(credit_note_id=note.pk)
    with note.pdf_file.open("rb") as handle:
        root = _xml_of(handle.read())
    _assert_valid(etree.tostring(root))
    assert _text(root, "//rsm:ExchangedDocument/ram:TypeCode") == "381"
    assert _text(root, "//rsm:ExchangedDocument/ram:ID") == note.number
    assert _text(root, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == invoice.number  # BG-3
    assert (
        _totals(root)
        == _expected(note, "EUR")
        == {
            "lines": Decimal("20.00"),
            "tax": Decimal("3.80"),
            "grand": Decimal("23.80"),
            "due": Decimal("23.80"),
        }
    )
    assert note.e_invoice_validation["valid"] is True


# --- the hybrid PDF -------------------------------------------------------------------------------------------------


def test_einvoice_pdf_is_pdfa3_with_factur_x_metadata(staff):
    _de_vat()
    invoice = _issue(_eu_customer(), staff, _team_lines())
    reader = PdfReader(io.BytesIO(_pdf(invoice)))
    root = reader.trailer["/Root"]
    assert "/OutputIntents" in root  # PDF/A colour profile (WeasyPrint's pdf/a-3b)
    [spec] = root["/AF"]
    assert spec.get_object()["/AFRelationship"] == "/Data"
    xmp = reader.xmp_metadata.stream.get_data().decode()
    assert "<pdfaid:part>3</pdfaid:part>" in xmp
    assert "<pdfaid:conformance>B</pdfaid:conformance>" in xmp
    assert "<fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>" in xmp
    assert "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in xmp
    # the human-readable page is still the invoice
    assert invoice.number in reader.pages[0].extract_text()


def test_customer_not_in_the_eu_or_switched_off_gets_a_plain_pdf(staff, customer, ca_tax):
    # given a Californian customer, and an EU business customer staff switched off
    us_invoice = _issue(customer, staff, _team_lines(), currency="USD")
    _de_vat()
    off = _eu_customer("Hooli")
    billing_profile_update(customer=off, e_invoicing=False, actor=staff)
    off_invoice = _issue(off, staff, _team_lines())
    for invoice in (us_invoice, off_invoice):
        assert invoice.e_invoice is False
        assert list(PdfReader(io.BytesIO(_pdf(invoice))).attachments) == []
        with pytest.raises(Exception, match="not issued as an e-invoice"):
            invoice_einvoice_for_customer(customer=invoice.customer, invoice_id=invoice.pk)


def test_issued_email_attaches_the_factur_x_pdf(staff):
    _de_vat()
    invoice = _issue(_eu_customer(), staff, _team_lines())
    assert invoice_send_issued_email(invoice_id=invoice.pk) is True
    [message] = mail.outbox
    [(filename, content, mimetype)] = message.attachments
    assert (filename, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    assert content == _pdf(invoice)
    _assert_valid(etree.tostring(_xml_of(content)))
    assert "Factur-X" in message.body


def test_xrechnung_download_carries_the_leitweg_id(staff):
    _de_vat()
    customer = _eu_customer(buyer_reference="04011000-1234512345-06")
    invoice = _issue(customer, staff, _team_lines())
    xml, filename, content_type = invoice_einvoice_for_customer(
        customer=customer, invoice_id=invoice.pk, fmt="xrechnung"
    )
    root = etree.fromstring(xml)
    assert (filename, content_type) == (f"{invoice.number}-xrechnung.xml", "application/xml")
    assert _text(root, "//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID") == einvoice.XRECHNUNG_GUIDELINE
    assert _text(root, "//ram:BuyerReference") == "04011000-1234512345-06"
    assert _totals(root) == _expected(invoice, "EUR")
    assert _text(root, "//ram:SellerTradeParty/ram:DefinedTradeContact/ram:EmailURIUniversalCommunication/ram:URIID")
    contact = "//ram:SellerTradeParty/ram:DefinedTradeContact/"
    assert _text(root, contact + "ram:TelephoneUniversalCommunication/ram:CompleteNumber") == "+1 415 555 0100"
    _assert_valid(xml.replace(einvoice.XRECHNUNG_GUIDELINE.encode(), einvoice.EN16931_GUIDELINE.encode()))
    assert einvoice.xrechnung_problems(xml) == []  # every BR-DE rule that can apply holds


def _xrechnung(staff, **profile):
    _de_vat()
    customer = _eu_customer(buyer_reference="04011000-1234512345-06", **profile)
    invoice = _issue(customer, staff, _team_lines())
    return customer, invoice


def test_xrechnung_without_a_seller_telephone_is_refused_with_br_de_6(settings, staff):
    # given: no SELLER_PHONE when the invoice was computed (the seller is frozen on it)
    settings.SELLER = {**settings.SELLER, "phone": ""}
    customer, invoice = _xrechnung(staff)
    # then: the Factur-X PDF is fine (EN 16931 has no such rule), the XRechnung file is refused with the rule
    assert invoice.e_invoice_validation["valid"] is True
    with pytest.raises(EInvoiceInvalid, match="BR-DE-6") as raised:
        invoice_einvoice_for_customer(customer=customer, invoice_id=invoice.pk, fmt="xrechnung")
    assert raised.value.validation["valid"] is False


def _drop(path):
    def mutate(root):
        for node in root.xpath(path, namespaces=NS):
            node.getparent().remove(node)

    return mutate


def _set(path, value):
    def mutate(root):
        for node in root.xpath(path, namespaces=NS):
            node.text = value

    return mutate


_SETTLEMENT_PATH = "//ram:ApplicableHeaderTradeSettlement"


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (_drop(f"{_SETTLEMENT_PATH}/ram:SpecifiedTradeSettlementPaymentMeans"), "BR-DE-1"),
        (_drop("//ram:SellerTradeParty/ram:DefinedTradeContact"), "BR-DE-2"),
        (_drop("//ram:SellerTradeParty/ram:PostalTradeAddress/ram:CityName"), "BR-DE-3"),
        (_drop("//ram:SellerTradeParty/ram:PostalTradeAddress/ram:PostcodeCode"), "BR-DE-4"),
        (_drop("//ram:DefinedTradeContact/ram:PersonName"), "BR-DE-5"),
        (_drop("//ram:DefinedTradeContact/ram:TelephoneUniversalCommunication"), "BR-DE-6"),
        (_drop("//ram:DefinedTradeContact/ram:EmailURIUniversalCommunication"), "BR-DE-7"),
        (_drop("//ram:BuyerTradeParty/ram:PostalTradeAddress/ram:CityName"), "BR-DE-8"),
        (_drop("//ram:BuyerTradeParty/ram:PostalTradeAddress/ram:PostcodeCode"), "BR-DE-9"),
        (_drop(f"{_SETTLEMENT_PATH}/ram:ApplicableTradeTax/ram:RateApplicablePercent"), "BR-DE-14"),
        (_drop("//ram:BuyerReference"), "BR-DE-15"),
        (_drop("//ram:SellerTradeParty/ram:SpecifiedTaxRegistration"), "BR-DE-16"),
        (_set("//rsm:ExchangedDocument/ram:TypeCode", "71"), "BR-DE-17"),
        (_set("//ram:PayeePartyCreditorFinancialAccount/ram:IBANID", "DE89370400440532013001"), "BR-DE-19"),
        (_set("//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID", einvoice.EN16931_GUIDELINE), "BR-DE-21"),
        (_drop(f"{_SETTLEMENT_PATH}/*/ram:PayeePartyCreditorFinancialAccount"), "BR-DE-23"),
        (_set("//rsm:ExchangedDocument/ram:TypeCode", "384"), "BR-DE-26"),
    ],
)
def test_xrechnung_problems_names_each_broken_br_de_rule(staff, mutate, rule):
    customer, invoice = _xrechnung(staff)
    xml, _, _ = invoice_einvoice_for_customer(customer=customer, invoice_id=invoice.pk, fmt="xrechnung")
    root = etree.fromstring(xml)
    # when
    mutate(root)
    # then
    failed = einvoice.xrechnung_problems(etree.tostring(root))
    assert rule in {failure["rule"] for failure in failed}
    assert all(failure["message"].startswith(f"[{failure['rule']}] ") for failure in failed)


# --- validation holds the invoice ----------------------------------------------------------------------------------


def _broken_seller(settings):
    settings.SELLER = {**settings.SELLER, "vat_id": ""}


def test_missing_seller_vat_id_holds_the_invoice_with_the_rule(settings, staff):
    _de_vat()
    customer = _eu_customer()
    established(customer, staff)
    _broken_seller(settings)
    draft = invoice_draft_create(customer=customer, currency="EUR", lines=_team_lines())
    # when
    invoice = invoice_finalize(invoice_id=draft.pk)
    # then it is held, never numbered or sent, with the rule and its message
    assert invoice.status == InvoiceStatus.HELD
    assert invoice.number is None
    einvoice_reasons = [r for r in invoice.hold_reasons if r["code"] == HoldReason.EINVOICE_INVALID]
    assert [r["message"].split(" ")[2] for r in einvoice_reasons] == ["BR-CO-26", "BR-AE-02"]
    assert all(r["message"].startswith("e-invoice invalid: BR-") for r in einvoice_reasons)
    assert "Seller VAT identifier (BT-31)" in einvoice_reasons[0]["message"]
    assert mail.outbox == []
    # and once the seller is complete again, the recheck issues it
    settings.SELLER = {**settings.SELLER, "vat_id": "DE811907980"}
    invoice = invoice_finalize(invoice_id=draft.pk)
    assert invoice.status == InvoiceStatus.OPEN and invoice.hold_reasons == []


def test_batch_finalize_holds_like_the_single_path(settings, staff):
    _de_vat()
    customers = [_eu_customer(f"Initech {n}") for n in range(2)]
    for customer in customers:
        established(customer, staff)
    _broken_seller(settings)
    single = invoice_draft_create(customer=customers[0], currency="EUR", lines=_team_lines())
    batch = invoice_draft_create(customer=customers[1], currency="EUR", lines=_team_lines())
    single = invoice_finalize(invoice_id=single.pk)
    issued, held = invoices_finalize_batch(invoice_ids=[batch.pk])
    batch = Invoice.objects.get(pk=batch.pk)
    assert (issued, held) == ([], [batch.pk])
    assert batch.status == single.status == InvoiceStatus.HELD
    assert batch.hold_reasons == single.hold_reasons


def test_invalid_iban_holds_the_invoice(settings, staff):
    _de_vat()
    customer = _eu_customer()
    established(customer, staff)
    settings.SELLER = {**settings.SELLER, "iban": "DE89370400440532013001"}  # checksum wrong
    draft = invoice_draft_create(customer=customer, currency="EUR", lines=_team_lines())
    invoice = invoice_finalize(invoice_id=draft.pk)
    assert invoice.status == InvoiceStatus.HELD
    assert [r["message"][:31] for r in invoice.hold_reasons] == ["e-invoice invalid: BR-61 the se"]


def test_manage_py_check_warns_when_the_seller_is_incomplete(settings):
    assert seller_einvoice_check() == []  # the demo seller is complete
    settings.SELLER = {**settings.SELLER, "vat_id": "", "iban": "DE00 1234", "bic": "NOTABIC"}
    problems = seller_einvoice_problems(settings.SELLER)
    assert problems[0] == "SELLER_VAT_ID is not set."
    assert any(p.startswith("SELLER_IBAN is not a valid IBAN") for p in problems)
    assert any(p.startswith("SELLER_BIC is not a valid BIC") for p in problems)
    assert {w.id for w in seller_einvoice_check()} == {"billing.W001"}
    settings.E_INVOICING_ENABLED = False
    assert seller_einvoice_check() == []


# --- portal and API -------------------------------------------------------------------------------------------------


def test_portal_and_api_download_the_einvoice(client, staff):
    _de_vat()
    customer = _eu_customer()
    owner = MembershipFactory(customer=customer, user=UserFactory(email="owner@initech.test")).user
    invoice = _issue(customer, staff, _team_lines())
    other = CustomerFactory(name="Other")
    BillingProfileFactory(customer=other)
    client.force_login(owner)
    base = f"/c/{customer.pk}/invoices/{invoice.pk}/e-invoice/"
    page = client.get(f"/c/{customer.pk}/invoices/{invoice.pk}/")
    assert base.encode() in page.content
    response = client.get(base)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert response.content == _pdf(invoice)
    response = client.get(base + "?format=xml")
    assert response.status_code == 200 and response["Content-Type"] == "application/xml"
    assert _totals(etree.fromstring(response.content)) == _expected(invoice, "EUR")
    assert client.get(base + "?format=docx").status_code == 400
    assert client.get(f"/c/{other.pk}/invoices/{invoice.pk}/e-invoice/").status_code in (403, 404)
    api = f"/api/v1/customers/{customer.pk}/invoices/{invoice.pk}/e-invoice/"
    response = client.get(api)
    assert response.status_code == 200 and response.content == _pdf(invoice)
    response = client.get(api + "?format=xml")
    assert response.status_code == 200 and response.content.startswith(b"<?xml")
    response = client.get(api + "?format=xrechnung")
    assert response.status_code == 200 and einvoice.XRECHNUNG_GUIDELINE.encode() in response.content
    response = client.get(api + "?format=docx")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_profile_e_invoicing_flag_defaults_on_for_eu_business():
    customer = _eu_customer()
    profile = BillingProfile.objects.get(customer=customer)
    assert profile.e_invoicing is True
    draft = invoice_draft_create(customer=customer, currency="EUR", lines=_team_lines())
    assert draft.e_invoice is True
    assert draft.buyer_details["postal_code"] == "10117"


def test_demo_initech_invoices_download_as_valid_factur_x():
    from django.core.management import call_command

    call_command("seed_demo", verbosity=0)
    initech = Invoice.objects.filter(customer__name="Initech GmbH", issued_at__isnull=False)
    assert initech.count() >= 3
    for invoice in initech:
        assert invoice.e_invoice, invoice.number
        pdf, _, content_type = invoice_einvoice_for_customer(customer=invoice.customer, invoice_id=invoice.pk)
        root = _xml_of(pdf)
        _assert_valid(etree.tostring(root))
        assert _totals(root)["grand"] == einvoice.amount(invoice.total_minor, "EUR")
    assert not Invoice.objects.filter(customer__name="Acme Inc", e_invoice=True).exists()  # California: plain PDF


def test_admin_shows_the_validation_result_and_staff_switch_e_invoicing_off(staff):
    from django.contrib.auth.models import Group
    from django.test import Client
    from django.urls import reverse

    _de_vat()
    customer = _eu_customer()
    invoice = _issue(customer, staff, _team_lines())
    billing_staff = UserFactory(email="billing-admin@continuum.test", is_staff=True)
    billing_staff.groups.add(Group.objects.get(name="Billing staff"))
    client = Client()
    client.force_login(billing_staff)
    page = client.get(reverse("admin:billing_invoice_change", args=[invoice.pk])).content.decode()
    assert "E-invoice (Factur-X EN 16931): Valid: XSD and EN 16931 Schematron, 0 failed assertions" in page
    # staff untick "e-invoicing" on the billing profile: the next invoice is a plain PDF
    profile = BillingProfile.objects.get(customer=customer)
    url = reverse("admin:billing_billingprofile_change", args=[profile.pk])
    form = {
        name: getattr(profile, name)
        for name in ("legal_name", "address_line1", "city", "postal_code", "country", "tax_id", "currency")
    }
    form.update(
        billing_emails="ap@initech.test",
        payment_terms_days=30,
        invoice_language="en",
        change_billing_mode="invoice_now",
        buyer_reference="",
    )
    response = client.post(url, form)  # e_invoicing unticked
    assert response.status_code == 302, response.content.decode()[:2000]
    assert BillingProfile.objects.get(customer=customer).e_invoicing is False
    draft = invoice_draft_create(customer=customer, currency="EUR", lines=_team_lines())
    assert draft.e_invoice is False


def test_simulated_year_every_eu_einvoice_validates(settings, staff):
    """Twelve monthly billing runs for a German (standard VAT, seller established in DE) and a French (reverse
    charge) business customer: every invoice the runs issue is an e-invoice whose stored PDF validates."""
    from datetime import timedelta

    from billing.services.billing_run import billing_run
    from subscriptions.periods import add_months
    from tests.factories import SubscriptionFactory

    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    customers = [_eu_customer("Initech"), _eu_customer("Bistro", country="FR", tax_id="FR40303265045")]
    start = utc(2025, 12, 1)
    for customer in customers:
        established(customer, staff)
        SubscriptionFactory(customer=customer, current_period_start=start, current_period_end=utc(2026, 1, 1))
    for month in range(1, 13):
        as_of = add_months(start, month) + timedelta(hours=1)
        with time_machine.travel(as_of, tick=False):
            billing_run(as_of=as_of)
    issued = Invoice.objects.filter(kind="regular", issued_at__isnull=False).order_by("pk")
    assert not Invoice.objects.filter(status=InvoiceStatus.HELD).exists()
    assert issued.count() == 2 * 13  # December 2025 and every month of 2026
    categories = set()
    for invoice in issued:
        assert invoice.e_invoice, invoice.number
        invoice = invoice_render_pdf(invoice_id=invoice.pk)
        root = _xml_of(_pdf(invoice))
        _assert_valid(etree.tostring(root))
        assert _totals(root) == _expected(invoice, "EUR")
        assert invoice.e_invoice_validation["failed"] == []
        categories |= {c[0] for c in _categories(root)}
    assert categories == {"S", "AE"}


def test_validate_xml_reports_xsd_and_syntax_errors_as_holds():
    result = einvoice.validate_xml(b"<Invoice>not CII</Invoice>")
    assert not result.valid and result.xsd_errors and result.failed == []
    assert einvoice.hold_messages(result)[0].startswith("e-invoice invalid: XSD ")
    broken = einvoice.validate_xml(b"<unclosed")
    assert broken.xsd_errors[0].startswith("Not well-formed XML")


# --- discounts as EN 16931 allowances (BG-20, BG-27) ---------------------------------------------------------------


def _percent_discount(customer, percent="20"):
    coupon = Coupon.objects.create(
        name="Launch offer", kind=CouponKind.PERCENT, percent_off=Decimal(percent), duration=CouponDuration.FOREVER
    )
    return Discount.objects.create(coupon=coupon, customer=customer, starts_at=NOW)


def _discount_line(amount_minor, *, discount=None, description="Discount: Launch offer (20 % off)"):
    return DraftLine(
        description=description,
        unit_amount_minor=amount_minor,
        amount_minor=amount_minor,
        kind=LineKind.DISCOUNT,
        discount_id=discount.pk if discount else None,
    )


def _allowances(node) -> list[dict]:
    return [
        {
            "charge": element.findtext("ram:ChargeIndicator/*", namespaces=NS),
            "percent": element.findtext("ram:CalculationPercent", namespaces=NS),
            "base": element.findtext("ram:BasisAmount", namespaces=NS),
            "amount": element.findtext("ram:ActualAmount", namespaces=NS),
            "reason_code": element.findtext("ram:ReasonCode", namespaces=NS),
            "reason": element.findtext("ram:Reason", namespaces=NS),
            "category": element.findtext("ram:CategoryTradeTax/ram:CategoryCode", namespaces=NS),
        }
        for element in node.xpath("ram:SpecifiedTradeAllowanceCharge", namespaces=NS)
    ]


def _summation(root, name) -> Decimal:
    return Decimal(_text(root, f"//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:{name}"))


def test_einvoice_percentage_discounts_are_line_allowances_with_base_and_percentage(settings, staff):
    # given: 20 % off both lines of a German invoice, each discount line right after the line it discounts
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    customer = _eu_customer()
    discount = _percent_discount(customer)
    team, seats = _team_lines()
    invoice = _issue(customer, staff, [team, _discount_line(-2_000, discount=discount), seats, _discount_line(-1_000)])
    # then: tax on the discounted amount, and the XML reconciles to the stored totals
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (12_000, 2_280, 14_280)
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    items = root.xpath("//ram:IncludedSupplyChainTradeLineItem", namespaces=NS)
    assert len(items) == 2  # the discount lines are allowances of their lines, not lines of their own
    first, second = (item.xpath("ram:SpecifiedLineTradeSettlement", namespaces=NS)[0] for item in items)
    assert _allowances(first) == [
        {
            "charge": "false",
            "percent": "20.00",
            "base": "100.00",
            "amount": "20.00",
            "reason_code": "95",
            "reason": "Discount: Launch offer (20 % off)",
            "category": None,
        }
    ]
    # no discount id on the second: the amount alone, no guessed percentage
    assert [(a["percent"], a["base"], a["amount"]) for a in _allowances(second)] == [(None, None, "10.00")]
    line_totals = [Decimal(item.xpath(".//ram:LineTotalAmount", namespaces=NS)[0].text) for item in items]
    assert line_totals == [Decimal("80.00"), Decimal("40.00")]
    assert _summation(root, "LineTotalAmount") == Decimal("120.00") == sum(line_totals)
    assert _summation(root, "AllowanceTotalAmount") == Decimal("0.00")
    assert _summation(root, "TaxBasisTotalAmount") == einvoice.amount(invoice.subtotal_minor, "EUR")
    assert _categories(root) == [("S", Decimal("19.00"), Decimal("120.00"), Decimal("22.80"))]


def test_einvoice_discount_without_a_line_is_a_document_allowance(settings, staff):
    # given: a fixed discount that is not next to a line it discounts (it comes first)
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    lines = [_discount_line(-1_500, description="Discount: Partner credit"), *_team_lines()]
    invoice = _issue(_eu_customer(), staff, lines)
    assert (invoice.subtotal_minor, invoice.tax_minor) == (13_500, 2_565)
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    settlement = root.xpath("//ram:ApplicableHeaderTradeSettlement", namespaces=NS)[0]
    assert _allowances(settlement) == [
        {
            "charge": "false",
            "percent": None,
            "base": None,
            "amount": "15.00",
            "reason_code": "95",
            "reason": "Discount: Partner credit",
            "category": "S",
        }
    ]
    # BT-106 (lines) − BT-107 (allowances) = BT-109 (the stored subtotal), and the breakdown uses the net basis
    assert _summation(root, "LineTotalAmount") == Decimal("150.00")
    assert _summation(root, "AllowanceTotalAmount") == Decimal("15.00")
    assert _summation(root, "TaxBasisTotalAmount") == Decimal("135.00")
    assert _summation(root, "GrandTotalAmount") == einvoice.amount(invoice.total_minor, "EUR")
    assert _categories(root) == [("S", Decimal("19.00"), Decimal("135.00"), Decimal("25.65"))]


def test_einvoice_reverse_charge_discount_validates(staff):
    # given: a reverse-charge customer (another EU country) with a discounted line
    customer = _eu_customer("Soylent", country="FR", tax_id="FR40303265045")
    discount = _percent_discount(customer, "12.5")
    invoice = _issue(
        customer,
        staff,
        [DraftLine(description="Team plan", unit_amount_minor=9_999), _discount_line(-1_250, discount=discount)],
    )
    root = _xml_of(_pdf(invoice))
    _assert_valid(etree.tostring(root))
    item = root.xpath("//ram:SpecifiedLineTradeSettlement", namespaces=NS)[0]
    assert [(a["percent"], a["base"], a["amount"]) for a in _allowances(item)] == [("12.50", "99.99", "12.50")]
    assert _categories(root) == [("AE", Decimal("0.00"), Decimal("87.49"), Decimal("0.00"))]


def test_einvoice_credit_note_of_a_discounted_line_credits_the_net_and_validates(settings, staff):
    settings.SELLER_EU_VAT_COUNTRY = "DE"
    _de_vat()
    customer = _eu_customer()
    team, seats = _team_lines()
    invoice = _issue(customer, staff, [team, _discount_line(-2_000, discount=_percent_discount(customer)), seats])
    line = invoice.lines.order_by("position").first()
    # when: the discounted line is credited in full (what was charged for it: 100.00 − 20.00)
    note = credit_note_create(
        invoice_id=invoice.pk,
        reason_code="wrong_seat_count",
        lines=[{"invoice_line_id": line.pk, "amount_minor": 8_000}],
        actor=staff,
    )
    note = credit_note_render_pdf(credit_note_id=note.pk)
    with note.pdf_file.open("rb") as handle:
        root = _xml_of(handle.read())
    # then
    _assert_valid(etree.tostring(root))
    assert _totals(root) == _expected(note, "EUR")
    assert _totals(root)["lines"] == Decimal("80.00")
