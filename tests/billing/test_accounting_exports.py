"""Accounting exports on a hand-built month (November 2026) with every document kind: invoices paid, partly paid,
credited (on a paid invoice: money owed back, then refunded by transfer; on an open one: less due), voided, an
invoice of October paid in November, and a draft that was never issued. Amounts worked out by hand (CA tax 7.25 %)."""

import csv
import io
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from openpyxl import load_workbook

from billing.models import AccountingExport, ExportStatus
from billing.services.credit_notes import credit_note_create
from billing.services.exports import (
    ExportInvalid,
    accounting_export_data,
    accounting_export_request,
    recognise_straight_line,
)
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create, invoice_void
from billing.services.payments import credit_note_refund_record_manual, payment_record_manual
from subscriptions.models import AuditEvent, ScheduledChange, ScheduledChangeKind
from subscriptions.services.subscriptions import subscription_create
from tests.factories import PackageFactory, priced_package
from tests.support.event_schemas import assert_events_match_schemas

pytestmark = pytest.mark.django_db

NOV = datetime(2026, 11, 1, tzinfo=UTC)  # the month exported; every moment below is relative to it
DEC = datetime(2026, 12, 1, tzinfo=UTC)


def _issue(customer, staff, lines, *, day):
    with time_machine.travel(NOV + timedelta(days=day, hours=9), tick=False):
        draft = invoice_draft_create(customer=customer, currency="USD", lines=lines)
        invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)
    draft.refresh_from_db()
    return draft


def _at(day):
    return time_machine.travel(NOV + timedelta(days=day, hours=12), tick=False)


@pytest.fixture
def month(customer, staff, ca_tax):
    # E: issued in October, paid in November (its payment is in the month; the invoice is not)
    e = _issue(customer, staff, [DraftLine(description="October work", unit_amount_minor=10_000)], day=-2)
    monthly = {"period_start": NOV, "period_end": DEC, "sku_code": "TEAM-M", "tax_category": "saas"}
    # A: 150.00 for November + 10.88 tax = 160.88; paid by transfer; 50.00 (+3.63 tax) credited after it was paid
    a = _issue(customer, staff, [DraftLine(description="Team, November", unit_amount_minor=15_000, **monthly)], day=1)
    # B: annual 1200.00 [1 Nov 2026, 1 Nov 2027) + 87.00 tax = 1287.00; 500.00 paid, the rest outstanding
    annual = {"period_start": NOV, "period_end": NOV.replace(year=NOV.year + 1), "sku_code": "TEAM-Y"}
    b = _issue(customer, staff, [DraftLine(description="Team, annual", unit_amount_minor=120_000, **annual)], day=2)
    # C: issued then voided; D: 80.00 + 5.80 tax, 20.00 (+1.45) credited while open
    c = _issue(customer, staff, [DraftLine(description="Duplicate", unit_amount_minor=4_000)], day=3)
    d = _issue(customer, staff, [DraftLine(description="Setup", unit_amount_minor=8_000, sku_code="SETUP")], day=4)
    with _at(1):
        payment_record_manual(invoice_id=e.pk, amount_minor=e.total_minor, reference="BANK-E", actor=staff)
    with _at(4):
        payment_record_manual(invoice_id=a.pk, amount_minor=16_088, reference="BANK-A", actor=staff)
    with _at(5):
        invoice_void(invoice_id=c.pk, reason_code="duplicate", reason="sent twice", actor=staff)
    with _at(9):
        payment_record_manual(invoice_id=b.pk, amount_minor=50_000, reference="BANK-B", actor=staff)
    with _at(10):
        credit_note_create(
            invoice_id=d.pk,
            reason_code="wrong_price",
            lines=[{"invoice_line_id": d.lines.get().pk, "amount_minor": 2_000}],
            actor=staff,
        )
    with _at(19):
        note = credit_note_create(
            invoice_id=a.pk,
            reason_code="wrong_seat_count",
            lines=[{"invoice_line_id": a.lines.get().pk, "amount_minor": 5_000}],
            actor=staff,
        )
    with _at(20):
        credit_note_refund_record_manual(credit_note_id=note.pk, reference="BANK-REFUND-A", actor=staff)
    with _at(25):  # a draft that is never issued
        invoice_draft_create(customer=customer, currency="USD", lines=[DraftLine(description="x", unit_amount_minor=1)])
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


def _rows(data, sheet, **match):
    return [row for row in getattr(data, sheet) if all(row[k] == v for k, v in match.items())]


def test_accounting_export_month_balances(month):
    with _at(40):
        data = accounting_export_data(start=NOV.date(), end=DEC.date())
    documents = {(row["document"], row["number"]): row for row in data.documents}
    a, b, c, d, e = (month[key] for key in "abcde")
    # one row per document of the month; October's invoice is not one of them, its November payment is
    assert {kind for kind, _ in documents} == {"invoice", "credit_note", "payment", "refund"}
    assert [n for kind, n in documents if kind == "invoice"] == [a.number, b.number, c.number, d.number]
    assert len(_rows(data, "documents", document="payment")) == 3
    assert _rows(data, "documents", document="payment", refers_to=e.number)[0]["gross"] == Decimal("107.25")
    invoice_a = documents[("invoice", a.number)]
    assert (invoice_a["net"], invoice_a["tax"], invoice_a["gross"]) == (
        Decimal("150.00"),
        Decimal("10.88"),
        Decimal("160.88"),
    )
    assert invoice_a["customer"] == "Acme Incorporated" and invoice_a["status"] == "paid"
    assert "US-CA" in invoice_a["tax_by_rate"] and "7.25%: 10.88" in invoice_a["tax_by_rate"]
    assert documents[("invoice", c.number)]["status"] == "void"
    [refund] = _rows(data, "documents", document="refund")
    assert refund["gross"] == Decimal("-53.63") and refund["reference"] == "BANK-REFUND-A"
    credit_a = _rows(data, "documents", document="credit_note", refers_to=a.number)[0]
    assert (credit_a["net"], credit_a["tax"], credit_a["gross"]) == (
        Decimal("-50.00"),
        Decimal("-3.63"),
        Decimal("-53.63"),
    )
    # lines: revenue by SKU and tax category
    assert {row["sku"] for row in data.lines} >= {"TEAM-M", "TEAM-Y", "SETUP"}
    # the books balance: invoiced − credited = paid − refunded + outstanding (void C counts nowhere)
    [balance] = data.balance
    assert balance["invoiced"] == Decimal("160.88") + Decimal("1287.00") + Decimal("85.80")
    assert balance["credited"] == Decimal("53.63") + Decimal("21.45")
    assert balance["paid"] == Decimal("160.88") + Decimal("500.00")
    assert balance["refunded_or_owed"] == Decimal("53.63")
    assert balance["outstanding"] == Decimal("787.00") + Decimal("64.35")
    assert balance["difference"] == Decimal("0.00")
    # revenue: November recognises A's month less its credit, 30/365 of B's year and D's one-off setup less credit
    november = {row["sku"]: row["recognised"] for row in data.revenue if row["month"] == "2026-11"}
    assert november == {
        "TEAM-M": Decimal("100.00"),
        "TEAM-Y": Decimal("98.63"),
        "SETUP": Decimal("60.00"),
    }
    annual = [row["recognised"] for row in data.revenue if row["sku"] == "TEAM-Y"]
    assert len(annual) == 12 and sum(annual) == Decimal("1200.00")
    # and every event the month emitted matches its schema
    assert assert_events_match_schemas() > 0


def test_recognise_straight_line_adds_up_and_follows_days():
    parts = recognise_straight_line(
        100_000, start=datetime(2026, 1, 15, tzinfo=UTC), end=datetime(2026, 3, 15, tzinfo=UTC), issued_at=NOV
    )
    assert [month.month for month, _ in parts] == [1, 2, 3]
    assert sum(share for _, share in parts) == 100_000
    assert parts[1][1] == 100_000 * 28 // 59  # February's 28 of the 59 days
    assert recognise_straight_line(500, start=None, end=None, issued_at=NOV) == [(NOV, 500)]


def test_accounting_export_request_builds_files_audited(month, staff, django_capture_on_commit_callbacks):
    with _at(40), django_capture_on_commit_callbacks(execute=True):
        xlsx = accounting_export_request(actor=staff, start=NOV.date(), end=DEC.date(), format="xlsx")
        zipped = accounting_export_request(actor=staff, start=NOV.date(), end=DEC.date(), format="csv")
    xlsx.refresh_from_db()
    zipped.refresh_from_db()
    assert (xlsx.status, xlsx.progress) == (ExportStatus.DONE, 100) and xlsx.rows > 10
    workbook = load_workbook(xlsx.file.open("rb"))
    assert workbook.sheetnames == ["documents", "tax", "lines", "revenue", "balance"]
    balance = list(workbook["balance"].values)
    assert balance[0][:7] == (
        "currency",
        "invoiced",
        "credited",
        "paid",
        "refunded_or_owed",
        "outstanding",
        "difference",
    )
    assert balance[1][6] == 0
    with zipfile.ZipFile(zipped.file.open("rb")) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("documents.csv").decode())))
    assert {row["document"] for row in rows} == {"invoice", "credit_note", "payment", "refund"}
    assert AuditEvent.objects.filter(action="accounting_export.requested", actor=staff).count() == 2


@pytest.mark.parametrize(
    ("start", "end", "fmt", "field"),
    [
        (date(2026, 11, 2), date(2026, 11, 1), "xlsx", "end"),
        (date(2026, 11, 1), date(2026, 11, 1), "xlsx", "end"),
        (date(2020, 1, 1), date(2026, 11, 1), "xlsx", "end"),
        (date(2026, 11, 1), date(2026, 12, 1), "pdf", "format"),
        ("2026-11-01", date(2026, 12, 1), "xlsx", "start"),
    ],
)
def test_accounting_export_request_refuses_bad_ranges(staff, start, end, fmt, field):
    with pytest.raises(ExportInvalid) as refused:
        accounting_export_request(actor=staff, start=start, end=end, format=fmt)
    assert refused.value.field == field
    assert not AccountingExport.objects.exists()


def test_accounting_export_labels_lines_with_the_package_in_force_then(customer, staff, ca_tax):
    # given: a Team subscription billed for November, moved to Business at the December boundary (a scheduled change
    # applied at renewal), then billed for December
    team = priced_package(slug="team")
    business = PackageFactory(slug="business", name="Business")
    with time_machine.travel(NOV - timedelta(days=3), tick=False):
        subscription = subscription_create(customer=customer, package=team, interval="month", seats=3)

    def period_invoice(start, end, day):
        line = DraftLine(
            description="Plan", unit_amount_minor=5_000, sku_code="PLAT-BASE-M", period_start=start, period_end=end
        )
        with time_machine.travel(NOV + timedelta(days=day, hours=9), tick=False):
            draft = invoice_draft_create(customer=customer, currency="USD", lines=[line], subscription=subscription)
            invoice_approve_and_issue(invoice_id=draft.pk, actor=staff)
        draft.refresh_from_db()
        return draft

    november = period_invoice(NOV, DEC, 0)
    ScheduledChange.objects.create(
        subscription=subscription,
        kind=ScheduledChangeKind.PACKAGE,
        payload={"package_id": business.pk, "package": "business"},
        effective_at=DEC,
        applied_at=DEC,
    )
    subscription.package = business
    subscription.save(update_fields=["package"])
    december = period_invoice(DEC, DEC + timedelta(days=31), 30)
    # when
    data = accounting_export_data(start=NOV.date(), end=(DEC + timedelta(days=1)).date())
    # then: November's line stays Team although the customer is on Business today
    assert [r["package"] for r in _rows(data, "lines", number=november.number)] == ["team"]
    assert [r["package"] for r in _rows(data, "lines", number=december.number)] == ["business"]
    assert {r["package"] for r in data.revenue if r["month"] == "2026-11"} == {"team"}
