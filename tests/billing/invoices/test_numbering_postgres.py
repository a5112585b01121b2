"""Gapless, unique invoice numbers under concurrent issuing — needs PostgreSQL's row locks (SQLite serialises
writers anyway, so the race this guards against cannot happen there)."""

import threading

import pytest
from django.db import connection, connections

from billing.models import Invoice, InvoiceNumberSequence
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from tests.factories import BillingProfileFactory, CustomerFactory, UserFactory

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_invoice_issue_concurrent_numbers_are_gapless_and_unique():
    assert connection.vendor == "postgresql"
    staff = UserFactory(is_staff=True)
    drafts = []
    for n in range(24):
        customer = CustomerFactory()
        BillingProfileFactory(customer=customer)
        drafts.append(
            invoice_draft_create(
                customer=customer, currency="USD", lines=[DraftLine(description=f"Item {n}", unit_amount_minor=100)]
            ).pk
        )
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(ids):
        try:
            barrier.wait()
            for invoice_id in ids:
                invoice_approve_and_issue(invoice_id=invoice_id, actor=staff)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(drafts[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    numbers = sorted(Invoice.objects.filter(pk__in=drafts).values_list("number", flat=True))
    series = numbers[0].rsplit("-", 1)[0]
    assert numbers == [f"{series}-{n:06d}" for n in range(1, 25)]
    assert InvoiceNumberSequence.objects.get(series=series).last_value == 24


def test_finalize_batches_and_single_issues_concurrent_numbers_are_gapless_and_unique():
    """Billing-run chunks (`invoices_finalize_batch`, as `billing.finalize_drafts_chunk` workers run them) and staff
    issuing one invoice at a time, all at once: every number of the series used once, none skipped."""
    from billing.services.invoices import invoices_finalize_batch
    from tests.billing.conftest import established

    assert connection.vendor == "postgresql"
    staff = UserFactory(is_staff=True)
    chunk_drafts, single_drafts = [], []
    for n in range(40):
        customer = CustomerFactory()
        BillingProfileFactory(customer=customer)
        established(customer, staff)
        draft = invoice_draft_create(
            customer=customer, currency="USD", lines=[DraftLine(description=f"Item {n}", unit_amount_minor=100)]
        ).pk
        (single_drafts if n % 5 == 0 else chunk_drafts).append(draft)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def chunk_worker(ids):
        try:
            barrier.wait()
            for start in range(0, len(ids), 4):
                invoices_finalize_batch(invoice_ids=ids[start : start + 4])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    def single_worker(ids):
        try:
            barrier.wait()
            for invoice_id in ids:
                invoice_approve_and_issue(invoice_id=invoice_id, actor=staff)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=chunk_worker, args=(chunk_drafts[i::4],)) for i in range(4)]
    threads += [threading.Thread(target=single_worker, args=(single_drafts[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert not Invoice.objects.filter(pk__in=chunk_drafts + single_drafts).exclude(status="open").exists()
    numbers = sorted(Invoice.objects.exclude(number=None).values_list("number", flat=True))
    series = numbers[0].rsplit("-", 1)[0]
    assert numbers == [f"{series}-{n:06d}" for n in range(1, 81)]
    assert InvoiceNumberSequence.objects.get(series=series).last_value == 80
