"""The billing run's set-based finalize (`invoices_finalize_batch`) against the one-invoice path (`invoice_finalize`):
same holds with the same reasons, same numbers in the same order, same totals, tax lines, status and audit rows,
and the same after-issue tasks — on one mixed chunk covering every pre-issue check."""

from datetime import date

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing.models import (
    ExemptionStatus,
    HoldReason,
    Invoice,
    InvoiceStatus,
    InvoiceStatusChange,
    InvoiceTaxLine,
    TaxExemption,
)
from billing.services.billing_run import billing_run, draft_chunk, finalize_drafts
from billing.services.invoices import DraftLine, invoice_draft_create, invoice_finalize, invoices_finalize_batch
from billing.services.profiles import billing_profile_update
from billing.tasks import finalize_drafts_chunk_task, invoices_after_issue_fan_out_task
from subscriptions.models import AuditEvent, SeatLedgerEntry, SubscriptionChange
from tests.billing.conftest import FUTURE, established
from tests.factories import BillingProfileFactory, CustomerFactory, SubscriptionFactory, utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]


class _Rollback(Exception):
    pass


def _exemption(customer, *, status, expires_on, number="CA-RESALE-42"):
    return TaxExemption.objects.create(
        customer=customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number=number,
        expires_on=expires_on,
        certificate="exemptions/test.pdf",
        certificate_content_type="application/pdf",
        certificate_size=100,
        certificate_sha256="0" * 64,
        status=status,
        decided_at=utc(2026, 10, 1) if status == ExemptionStatus.APPROVED else None,
    )


def _customer(name, staff, *, established_=True, profile=True, **profile_fields):
    customer = CustomerFactory(name=name)
    if profile:
        BillingProfileFactory(customer=customer)
    if established_:
        established(customer, staff)
    if profile_fields:
        billing_profile_update(customer=customer, **profile_fields)
    return customer


def _regular_draft(customer, **subscription_fields):
    subscription = SubscriptionFactory(customer=customer, **subscription_fields)
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    return subscription, invoice_id


def _next_period(subscription, *, seats):
    """The period rolls over to November with `seats` (no SubscriptionChange recorded)."""
    subscription.current_period_start, subscription.current_period_end = utc(2026, 11, 1), utc(2026, 12, 1)
    subscription.seats = seats
    subscription.save()
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    return invoice_id


def _mixed_chunk(staff) -> dict[str, list[int]]:
    """One draft (or two) per case; returns {case: [draft ids]} — none of the drafts checked yet."""
    cases: dict[str, list[int]] = {}
    cases["clean"] = [_regular_draft(_customer("Clean", staff))[1]]
    cases["clean_zero_total"] = [
        invoice_draft_create(
            customer=_customer("Zero", staff),
            currency="USD",
            lines=[DraftLine(description="Free", unit_amount_minor=0)],
        ).pk
    ]
    pending = _customer("Pending", staff)
    _exemption(pending, status=ExemptionStatus.SUBMITTED, expires_on=FUTURE)
    cases["exemption_pending"] = [_regular_draft(pending)[1]]
    expiring = _customer("Expiring", staff)
    _exemption(expiring, status=ExemptionStatus.APPROVED, expires_on=date(2026, 11, 20), number="CA-EXP-1")
    cases["exemption_expires_in_period"] = [_regular_draft(expiring)[1]]
    cases["po_missing"] = [_regular_draft(_customer("NoPO", staff, requires_po=True))[1]]
    cases["standing_po"] = [
        _regular_draft(_customer("StandingPO", staff, requires_po=True, standing_po_number="PO-9"))[1]
    ]
    seats = _customer("Seats", staff)
    subscription = SubscriptionFactory(customer=seats)
    SeatLedgerEntry.objects.create(
        subscription=subscription, seats_from=0, seats_to=8, reason="subscribed", effective_at=utc(2026, 10, 1)
    )
    cases["seats_mismatch"] = draft_chunk(subscription_ids=[subscription.pk])
    matching = _customer("SeatsOK", staff)
    subscription = SubscriptionFactory(customer=matching)
    SeatLedgerEntry.objects.create(
        subscription=subscription, seats_from=0, seats_to=10, reason="subscribed", effective_at=utc(2026, 10, 1)
    )
    cases["seats_match"] = draft_chunk(subscription_ids=[subscription.pk])
    cases["first_invoice"] = [_regular_draft(_customer("New", staff, established_=False))[1]]
    cases["no_profile"] = [_regular_draft(_customer("NoProfile", staff, established_=False, profile=False))[1]]
    # > 25 % more than the previous (issued) invoice, no recorded change
    jump = _customer("Jump", staff)
    subscription, october = _regular_draft(jump, current_period_start=utc(2026, 10, 1))
    invoice_finalize(invoice_id=october)
    cases["amount_changed"] = [_next_period(subscription, seats=20)]
    # the same jump, explained by a recorded change
    explained = _customer("Explained", staff)
    subscription, october = _regular_draft(explained, current_period_start=utc(2026, 10, 1))
    invoice_finalize(invoice_id=october)
    SubscriptionChange.objects.create(
        subscription=subscription, kind="seats", currency="USD", effective_at=utc(2026, 10, 20)
    )
    cases["amount_change_explained"] = [_next_period(subscription, seats=20)]
    # a small change (≤ 25 %) is fine
    small = _customer("Small", staff)
    subscription, october = _regular_draft(small, current_period_start=utc(2026, 10, 1))
    invoice_finalize(invoice_id=october)
    cases["amount_change_small"] = [_next_period(subscription, seats=11)]
    # catch-up: October and November of one subscription in the same chunk; November compares with the October
    # issued just before it
    catch_up = _customer("CatchUp", staff)
    subscription, october = _regular_draft(catch_up, current_period_start=utc(2026, 10, 1))
    cases["catch_up"] = [october, _next_period(subscription, seats=20)]
    cases["tax_location_missing"] = [_regular_draft(_customer("NoCity", staff, city="", postal_code=""))[1]]
    cases["negative_total"] = [
        invoice_draft_create(
            customer=_customer("Negative", staff),
            currency="USD",
            lines=[DraftLine(description="Credit", unit_amount_minor=-500)],
        ).pk
    ]
    cases["currency_mismatch"] = [
        invoice_draft_create(
            customer=_customer("Euro", staff),
            currency="EUR",
            lines=[DraftLine(description="Seats", unit_amount_minor=500)],
        ).pk
    ]
    # EU business customers get e-invoices: a valid one is issued; one the EN 16931 rules reject (amounts with three
    # decimals, BR-DEC) is held with the rule
    cases["einvoice_valid"] = [
        invoice_draft_create(
            customer=_customer("Initech", staff, country="DE", region="", currency="EUR", tax_id="DE136695976"),
            currency="EUR",
            lines=[DraftLine(description="Seats", unit_amount_minor=500, quantity=3)],
        ).pk
    ]
    dinar = CustomerFactory(name="Dinar", country="DE", region="", currency="BHD")
    BillingProfileFactory(customer=dinar)
    established(dinar, staff)  # a plain invoice: no VAT ID yet
    billing_profile_update(customer=dinar, tax_id="DE136695976")
    cases["einvoice_invalid"] = [
        invoice_draft_create(
            customer=dinar, currency="BHD", lines=[DraftLine(description="Seats", unit_amount_minor=1_500)]
        ).pk
    ]
    cases["clean_again"] = [_regular_draft(_customer("Clean2", staff))[1]]
    return cases


def _outcome(ids: list[int], queued: list[int]) -> dict:
    """What a user (or the auditor) could notice about the finalized invoices."""
    invoices = {}
    for invoice in Invoice.objects.filter(pk__in=ids).order_by("pk"):
        invoices[invoice.pk] = {
            "status": invoice.status,
            "hold_reasons": invoice.hold_reasons,
            "number": invoice.number,
            "series": invoice.series,
            "issued": invoice.issued_at is not None,
            "checked": invoice.checks_run_at is not None,
            "due_on": invoice.due_on,
            "paid": invoice.paid_at is not None,
            "amounts": (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor, invoice.amount_due_minor),
            "po_number": invoice.po_number,
            "exemption": (invoice.exemption_id, invoice.exemption_reference, invoice.exemption_wording),
            "billing": (invoice.billing_legal_name, invoice.billing_address, invoice.billing_emails),
            "lines": [(line.amount_minor, line.tax_rate, line.tax_name) for line in invoice.lines.all()],
            "tax_lines": list(
                InvoiceTaxLine.objects.filter(invoice=invoice)
                .order_by("name")
                .values_list("name", "rate", "taxable_amount_minor", "tax_amount_minor")
            ),
            "status_changes": list(
                InvoiceStatusChange.objects.filter(invoice=invoice)
                .order_by("id")
                .values_list("from_status", "to_status", "actor_id", "reason")
            ),
            "audit": list(
                AuditEvent.objects.filter(object_type="invoice", object_id=str(invoice.pk))
                .order_by("id")
                .values_list("customer_id", "actor_kind", "action", "summary", "before", "after", "reason")
            ),
        }
    return {"invoices": invoices, "after_issue_tasks": queued}


def _run(path, ids, monkeypatch, django_capture_on_commit_callbacks) -> dict:
    """Finalize `ids` with `path` inside a savepoint that is rolled back afterwards, so both paths start from the
    same state; return the outcome, with the ids the after-commit callbacks queue the after-issue task for."""
    queued: list[int] = []
    monkeypatch.setattr("billing.services.invoices.issue._after_issue", queued.append)
    monkeypatch.setattr("billing.services.invoices.issue._after_issue_many", queued.extend)
    outcome = None
    try:
        with transaction.atomic():
            with django_capture_on_commit_callbacks() as callbacks:
                path(ids)
            for callback in callbacks:
                callback()
            outcome = _outcome(ids, queued)
            raise _Rollback
    except _Rollback:
        pass
    return outcome


def _one_by_one(ids):
    for invoice_id in sorted(ids):
        invoice_finalize(invoice_id=invoice_id)


def _as_chunk(ids):
    invoices_finalize_batch(invoice_ids=ids)


def test_invoices_finalize_batch_gives_exactly_what_invoice_finalize_gives(
    staff, ca_tax, monkeypatch, django_capture_on_commit_callbacks
):
    # given: one chunk of drafts covering every pre-issue check, and clean ones
    cases = _mixed_chunk(staff)
    ids = sorted(i for case in cases.values() for i in case)
    assert Invoice.objects.filter(pk__in=ids, status=InvoiceStatus.DRAFT).count() == len(ids)

    # when: finalized one by one (the staff path), then — from the same state — as one chunk (the billing run)
    single = _run(_one_by_one, ids, monkeypatch, django_capture_on_commit_callbacks)
    batch = _run(_as_chunk, ids, monkeypatch, django_capture_on_commit_callbacks)

    # then: every case ended as the rules say ...
    def codes(case):
        return [[r["code"] for r in single["invoices"][i]["hold_reasons"]] for i in cases[case]]

    assert codes("clean") == codes("clean_again") == codes("standing_po") == codes("seats_match") == [[]]
    assert codes("exemption_pending") == [[HoldReason.EXEMPTION_PENDING]]
    assert codes("exemption_expires_in_period") == [[HoldReason.EXEMPTION_EXPIRES]]
    assert codes("po_missing") == [[HoldReason.PO_MISSING]]
    assert codes("seats_mismatch") == [[HoldReason.SEATS_MISMATCH]]
    assert codes("first_invoice") == [[HoldReason.FIRST_INVOICE]]
    assert codes("no_profile") == [[HoldReason.FIRST_INVOICE, HoldReason.TAX_LOCATION_MISSING]]
    assert codes("amount_changed") == [[HoldReason.AMOUNT_CHANGED]]
    assert codes("amount_change_explained") == codes("amount_change_small") == [[]]
    assert codes("catch_up") == [[], [HoldReason.AMOUNT_CHANGED]]
    assert codes("tax_location_missing") == [[HoldReason.TAX_LOCATION_MISSING]]
    assert codes("negative_total") == [[HoldReason.NEGATIVE_TOTAL]]
    assert codes("currency_mismatch") == [[HoldReason.CURRENCY_MISMATCH]]
    assert codes("einvoice_valid") == [[]]
    assert {code for codes_ in codes("einvoice_invalid") for code in codes_} == {HoldReason.EINVOICE_INVALID}
    assert single["invoices"][cases["einvoice_invalid"][0]]["hold_reasons"][0]["message"].startswith(
        "e-invoice invalid: BR-DEC-"
    )
    assert single["invoices"][cases["clean_zero_total"][0]]["status"] == InvoiceStatus.PAID
    assert single["invoices"][cases["standing_po"][0]]["po_number"] == "PO-9"
    issued = [i for i in ids if single["invoices"][i]["issued"]]
    numbers = [single["invoices"][i]["number"] for i in issued]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(issued) == 9
    assert single["after_issue_tasks"] == issued
    # ... and the chunk path gave exactly the same result, invoice by invoice
    for invoice_id in ids:
        assert batch["invoices"][invoice_id] == single["invoices"][invoice_id], invoice_id
    assert batch == single


def test_invoices_finalize_batch_is_idempotent_and_skips_non_drafts(staff, ca_tax):
    customer = _customer("Again", staff)
    _, invoice_id = _regular_draft(customer)
    held_id = _regular_draft(_customer("Held", staff, established_=False))[1]
    assert invoices_finalize_batch(invoice_ids=[invoice_id, held_id]) == ([invoice_id], [held_id])
    number = Invoice.objects.get(pk=invoice_id).number
    # a duplicated or late chunk task: nothing is finalized twice
    assert invoices_finalize_batch(invoice_ids=[invoice_id, held_id]) == ([], [])
    assert Invoice.objects.get(pk=invoice_id).number == number
    assert InvoiceStatusChange.objects.filter(invoice_id=invoice_id).count() == 2  # ∅ → draft → open


def test_invoices_finalize_batch_query_count_does_not_grow_with_the_chunk(staff, ca_tax):
    def drafts(n, prefix):
        ids = []
        for i in range(n):
            customer = _customer(f"{prefix}{i}", staff, requires_po=(i % 2 == 0))
            subscription, october = _regular_draft(customer, current_period_start=utc(2026, 10, 1))
            invoice_finalize(invoice_id=october)
            ids.append(_next_period(subscription, seats=10 + i * 5))
        return ids

    two, six = drafts(2, "A"), drafts(6, "B")
    with CaptureQueriesContext(connection) as small:
        invoices_finalize_batch(invoice_ids=two)
    with CaptureQueriesContext(connection) as large:
        invoices_finalize_batch(invoice_ids=six)
    assert len(large) == len(small) <= 27  # 25 + the health-recompute mark (one read, one insert per batch)


def test_invoice_finalize_recomputes_and_checks_once(staff, ca_tax):
    _, invoice_id = _regular_draft(_customer("Once", staff))
    with CaptureQueriesContext(connection) as queries:
        assert invoice_finalize(invoice_id=invoice_id).status == InvoiceStatus.OPEN
    # was ~38 (recomputed and checked twice); 25 with the invoice.issued event written to the outbox
    assert len(queries) <= 25
    assert InvoiceTaxLine.objects.filter(invoice_id=invoice_id).count() == 1


def test_billing_run_fan_out_queues_finalize_chunks_for_the_workers(staff, ca_tax, monkeypatch):
    for n in range(5):
        SubscriptionFactory(customer=_customer(f"Fan{n}", staff), current_period_start=utc(2026, 10, 1))
    queued: list[list[int]] = []
    # what the service queues (through billing's on-commit helper), recorded instead of sent to a broker
    monkeypatch.setattr(
        "billing.services.billing_run.enqueue_on_commit",
        lambda task_name, /, **kwargs: queued.append(kwargs["invoice_ids"]),
    )

    result = billing_run(as_of=utc(2026, 10, 2), chunk_size=2, finalize_fan_out=True)

    assert (result.drafted, result.issued, result.held, result.finalize_chunks_queued) == (5, 0, 0, 3)
    assert [len(ids) for ids in queued] == [2, 2, 1]
    assert Invoice.objects.filter(status=InvoiceStatus.DRAFT, checks_run_at__isnull=True).count() == 5
    # a worker runs each chunk; a duplicated delivery finalizes nothing twice
    for ids in queued + queued[:1]:
        finalize_drafts_chunk_task.apply(args=[ids]).get()
    assert Invoice.objects.filter(status=InvoiceStatus.OPEN).exclude(kind="manual").count() == 5
    numbers = sorted(Invoice.objects.exclude(kind="manual").values_list("number", flat=True))
    assert len(set(numbers)) == 5


def test_finalize_drafts_falls_back_to_one_by_one_when_the_chunk_fails(staff, ca_tax, monkeypatch):
    ids = [_regular_draft(_customer(f"Fallback{n}", staff))[1] for n in range(3)]

    def broken(**kwargs):
        raise RuntimeError("chunk failed")

    monkeypatch.setattr("billing.services.billing_run.invoices_finalize_batch", broken)
    assert finalize_drafts(invoice_ids=ids) == (3, 0, 0)


def test_a_finalized_chunk_sends_one_message_whose_worker_queues_each_after_issue_task(
    staff, ca_tax, monkeypatch, django_capture_on_commit_callbacks
):
    """The billing run's process publishes one fan-out message per chunk (publishing cost ~1 ms per message); the
    fan-out task then queues every issued invoice's own after-issue task (PDF, e-mail, collection), once each."""
    ids = [_regular_draft(_customer(f"Fan-out {n}", staff))[1] for n in range(3)]
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        "subscriptions.dispatch.send_now", lambda name, /, options=None, **kw: sent.append((name, kw)) or True
    )
    monkeypatch.setattr(
        "billing.services.invoices.issue.send_now", lambda name, /, options=None, **kw: sent.append((name, kw)) or True
    )
    with django_capture_on_commit_callbacks(execute=True):
        issued, held = invoices_finalize_batch(invoice_ids=ids)
    assert (sorted(issued), held) == (sorted(ids), [])
    assert sent == [("billing.invoices_after_issue_fan_out", {"invoice_ids": sorted(ids)})]

    sent.clear()
    assert invoices_after_issue_fan_out_task.apply(args=[sorted(ids)]).get() == 3
    assert sent == [("billing.invoice_after_issue", {"invoice_id": invoice_id}) for invoice_id in sorted(ids)]
