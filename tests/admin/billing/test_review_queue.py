"""Billing staff's review queue, end to end through the admin and the real billing services."""

import pytest
from django.core import mail
from django.core.files.base import ContentFile
from django.urls import reverse

from billing.models import CreditNote, Invoice, InvoiceStatus, TaxExemption
from billing.services.exemptions import tax_exemption_submit
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create, invoice_finalize
from subscriptions.models import AuditEvent
from tests.admin.helpers import PDF_BYTES
from tests.clock import in_years
from tests.factories import BillingProfileFactory, CustomerFactory, TaxRateFactory, UserFactory

EXPIRES = in_years(3)  # a certificate's last valid day, years from today (tests/clock.py)

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(db):
    TaxRateFactory()  # CA sales tax 7.25 % on SaaS
    customer = CustomerFactory(name="Acme", legal_name="Acme Incorporated", country="US", region="CA")
    BillingProfileFactory(customer=customer, billing_emails=["ap@acme.test"])
    return customer


def _held(customer, amount: int = 10_000) -> Invoice:
    invoice = invoice_draft_create(
        customer=customer,
        currency=customer.currency,
        lines=[DraftLine(description="Consulting", unit_amount_minor=amount)],
    )
    return invoice_finalize(invoice_id=invoice.pk)


def _issued(customer, amount: int = 10_000) -> Invoice:
    invoice = _held(customer, amount)
    if invoice.status != InvoiceStatus.OPEN:
        invoice = invoice_approve_and_issue(invoice_id=invoice.pk, actor=UserFactory(is_staff=True))
    invoice.refresh_from_db()
    return invoice


def _established(customer) -> None:
    earlier = invoice_draft_create(
        customer=customer, currency=customer.currency, lines=[DraftLine(description="Earlier", unit_amount_minor=100)]
    )
    invoice_approve_and_issue(invoice_id=earlier.pk, actor=UserFactory(is_staff=True))


def _action(invoice: Invoice, name: str) -> str:
    return reverse("admin:billing_invoice_action", args=[invoice.pk, name])


def test_review_queue_flow_from_held_to_issued(billing_client, billing_user, customer):
    invoice = _held(customer)
    assert invoice.status == InvoiceStatus.HELD

    queue = billing_client.get(
        reverse("admin:billing_invoice_changelist"), {"status__exact": "held", "hold_reason": "first_invoice"}
    )
    assert [row.pk for row in queue.context["cl"].result_list] == [invoice.pk]
    detail = billing_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    assert "Approve and issue" in detail.text
    assert "First invoice of a new customer" in detail.text

    response = billing_client.post(_action(invoice, "approve"), {"note": "Checked with sales"})

    assert response.status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.number
    change = invoice.status_changes.get(to_status=InvoiceStatus.OPEN)
    assert change.actor == billing_user
    assert "Checked with sales" in change.reason
    issued_page = billing_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    assert "Approve and issue" not in issued_page.text
    assert 'name="description"' not in issued_page.text  # issued: no line editing


def test_support_agent_crafted_post_to_approve_an_invoice_is_forbidden(support_client, customer):
    invoice = _held(customer)

    page = support_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    response = support_client.post(_action(invoice, "approve"), {"note": "sneaky"})
    bulk = support_client.post(
        reverse("admin:billing_invoice_changelist"),
        {"action": "approve_and_issue_selected", "_selected_action": [invoice.pk]},
    )

    assert page.status_code == 200
    assert "Approve and issue" not in page.text
    assert response.status_code == 403
    assert bulk.status_code in (200, 302, 403)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.HELD
    assert invoice.number is None


@pytest.mark.parametrize("action", ["void", "recheck", "line_add", "credit_note", "mark_paid", "write_off"])
def test_support_agent_cannot_run_any_billing_action(support_client, customer, action):
    invoice = _held(customer)

    response = support_client.post(_action(invoice, action), {"reason": "x", "reason_code": "other"})

    assert response.status_code == 403
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.HELD


def test_approve_and_issue_many_from_the_queue(billing_client, customer):
    first, second = _held(customer), _held(customer, amount=20_000)

    response = billing_client.post(
        reverse("admin:billing_invoice_changelist"),
        {"action": "approve_and_issue_selected", "_selected_action": [first.pk, second.pk]},
    )

    assert response.status_code == 302
    assert set(Invoice.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)) == {"open"}


def test_exemption_approval_releases_the_held_invoice_with_zero_tax(
    billing_client, customer, django_capture_on_commit_callbacks
):
    _established(customer)
    exemption = tax_exemption_submit(
        customer=customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number="CA-RESALE-9",
        expires_on=EXPIRES,
        certificate=ContentFile(PDF_BYTES, name="cert.pdf"),
    )
    invoice = _held(customer)
    assert [r["code"] for r in invoice.hold_reasons] == ["exemption_pending"]
    assert invoice.tax_minor > 0

    with django_capture_on_commit_callbacks(execute=True):
        response = billing_client.post(
            reverse("admin:billing_taxexemption_decide", args=[exemption.pk, "approve"]),
            {"expires_on": EXPIRES.isoformat(), "note": "Valid resale certificate"},
        )

    assert response.status_code == 302
    exemption.refresh_from_db()
    assert exemption.status == "approved"
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.tax_minor == 0
    assert invoice.total_minor == 10_000


def test_exemption_rejection_needs_a_reason_the_customer_sees(billing_client, customer):
    exemption = tax_exemption_submit(
        customer=customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number="CA-RESALE-9",
        expires_on=EXPIRES,
        certificate=ContentFile(PDF_BYTES, name="cert.pdf"),
    )
    url = reverse("admin:billing_taxexemption_decide", args=[exemption.pk, "reject"])

    empty = billing_client.post(url, {"reason": ""}, follow=True)
    exemption.refresh_from_db()
    assert exemption.status == "submitted"
    assert "reason" in empty.text

    billing_client.post(url, {"reason": "The certificate is not signed."})
    exemption.refresh_from_db()
    assert (exemption.status, exemption.decision_reason) == ("rejected", "The certificate is not signed.")


def test_support_cannot_decide_an_exemption(support_client, customer):
    exemption = tax_exemption_submit(
        customer=customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number="CA-RESALE-9",
        expires_on=EXPIRES,
        certificate=ContentFile(PDF_BYTES, name="cert.pdf"),
    )

    response = support_client.post(reverse("admin:billing_taxexemption_decide", args=[exemption.pk, "approve"]), {})

    assert response.status_code == 403
    assert TaxExemption.objects.get(pk=exemption.pk).status == "submitted"


def test_edit_a_held_draft_line_then_refused_once_issued(billing_client, customer):
    invoice = _held(customer)
    line = invoice.lines.get()

    billing_client.post(
        _action(invoice, "line_update"),
        {
            "line_id": line.pk,
            "description": "Consulting (2 days)",
            "quantity": 2,
            "unit_amount": "100.00",
            "expected_version": invoice.version,
        },
    )
    invoice.refresh_from_db()
    assert invoice.subtotal_minor == 20_000
    assert invoice.tax_minor == 1_450  # 7.25 % of 200.00, recomputed

    invoice_approve_and_issue(invoice_id=invoice.pk, actor=UserFactory(is_staff=True))
    invoice.refresh_from_db()
    response = billing_client.post(
        _action(invoice, "line_update"),
        {
            "line_id": line.pk,
            "description": "x",
            "quantity": 9,
            "unit_amount": "1",
            "expected_version": invoice.version,
        },
        follow=True,
    )
    invoice.refresh_from_db()
    assert invoice.subtotal_minor == 20_000
    assert "issued" in response.text


def test_void_needs_a_reason_and_records_it(billing_client, customer):
    invoice = _held(customer)

    billing_client.post(_action(invoice, "void"), {"reason_code": "duplicate", "reason": ""})
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.HELD

    billing_client.post(_action(invoice, "void"), {"reason_code": "duplicate", "reason": "Billed twice"})
    invoice.refresh_from_db()
    assert (invoice.status, invoice.void_reason_code, invoice.void_reason) == ("void", "duplicate", "Billed twice")


def test_credit_note_mark_paid_and_write_off_on_issued_invoices(billing_client, customer):
    paid = _issued(customer)

    billing_client.post(_action(paid, "mark_paid"), {"amount": "107.25", "reference": "BANK-REF-1"})
    paid.refresh_from_db()
    assert paid.status == InvoiceStatus.PAID

    billing_client.post(
        _action(paid, "credit_note"),
        {"reason_code": "goodwill", "reason_text": "Outage", "credit_" + str(paid.lines.get().pk): "10.00"},
    )
    note = CreditNote.objects.get(invoice=paid)
    assert note.subtotal_minor == 1_000

    other = _issued(customer)
    billing_client.post(_action(other, "write_off"), {"reason": "Customer went bankrupt"})
    other.refresh_from_db()
    assert other.status == InvoiceStatus.UNCOLLECTIBLE


def test_mark_paid_refuses_more_than_is_due(billing_client, customer):
    invoice = _issued(customer)

    response = billing_client.post(
        _action(invoice, "mark_paid"), {"amount": "999.00", "reference": "BANK-REF-2"}, follow=True
    )

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert "more than" in response.text


def test_support_resends_an_invoice_email_and_it_is_audited(support_client, support_user, customer):
    invoice = _issued(customer)
    mail.outbox.clear()

    response = support_client.post(_action(invoice, "resend_email"))

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ap@acme.test"]
    assert AuditEvent.objects.filter(action="invoice.email_resent", actor=support_user).exists()


def test_mark_paid_records_a_manual_payment_visible_on_the_customer_page(billing_client, billing_user, customer):
    from billing.models import Payment

    invoice = _issued(customer)

    billing_client.post(_action(invoice, "mark_paid"), {"amount": "107.25", "reference": "BANK-REF-7"})

    payment = Payment.objects.get(invoice=invoice)
    assert (payment.kind, payment.amount_minor, payment.reference) == ("manual", 10_725, "BANK-REF-7")
    page = billing_client.get(reverse("admin:subscriptions_customer_change", args=[customer.pk]))
    assert "BANK-REF-7" in page.text
    assert any(entry.kind == "payment" for entry in page.context["c360"].timeline)


def test_support_cannot_retry_stripe_events_or_record_payments(support_client, customer):
    invoice = _issued(customer)

    assert support_client.get(reverse("admin:billing_stripeevent_changelist")).status_code == 403
    assert support_client.get(reverse("admin:billing_payment_changelist")).status_code == 200
    response = support_client.post(_action(invoice, "mark_paid"), {"amount": "1.00", "reference": "X"})
    assert response.status_code == 403


def test_billing_staff_retry_a_failed_stripe_event(billing_client):
    from billing.models import StripeEvent

    event = StripeEvent.objects.create(
        stripe_event_id="evt_test_1",
        type="customer.created",
        stripe_created=1,
        payload={"id": "evt_test_1", "type": "customer.created", "data": {"object": {"id": "cus_x"}}},
        status="failed",
        error="boom",
    )

    response = billing_client.post(
        reverse("admin:billing_stripeevent_changelist"),
        {"action": "retry_selected", "_selected_action": [event.pk]},
    )

    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="stripe_event.retried").exists()
