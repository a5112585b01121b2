from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail

from billing.exceptions import CertificateInvalid, ExemptionInvalid, InvalidTransition, NotFound
from billing.models import ExemptionStatus, HoldReason, Invoice, InvoiceStatus, TaxExemption
from billing.selectors import tax_exemption_certificate_for_customer, tax_exemption_current_for_customer
from billing.services.billing_run import draft_chunk
from billing.services.exemptions import (
    MAX_CERTIFICATE_BYTES,
    tax_exemption_approve,
    tax_exemption_reject,
    tax_exemption_send_reminders,
    tax_exemption_submit,
    tax_exemptions_expire_due,
)
from billing.services.invoices import invoice_finalize
from tests.billing.conftest import EXE_BYTES, FUTURE, PDF_BYTES, PNG_BYTES, certificate, established
from tests.clock import day_start, days_from_today, today
from tests.factories import BillingProfileFactory, CustomerFactory, MembershipFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


def _submit(customer, data=PDF_BYTES, name="certificate.pdf", **overrides):
    fields = {
        "customer": customer,
        "jurisdictions": ["US-CA"],
        "exemption_type": "resale",
        "certificate_number": "CA-RESALE-42",
        "expires_on": FUTURE,
        "certificate": certificate(data, name),
    }
    fields.update(overrides)
    return tax_exemption_submit(**fields)


def _held_invoice(subscription):
    [invoice_id] = draft_chunk(subscription_ids=[subscription.pk])
    return invoice_finalize(invoice_id=invoice_id)


def test_tax_exemption_submit_stores_certificate_privately_with_sniffed_type(customer, owner, _private_storage):
    exemption = _submit(customer, data=PNG_BYTES, name="scan.pdf", actor=owner)
    assert exemption.status == ExemptionStatus.SUBMITTED
    assert exemption.certificate_content_type == "image/png"  # from content, not from the ".pdf" name
    path = Path(exemption.certificate.path)
    assert path.is_file() and Path(_private_storage) in path.parents
    assert "scan" not in path.name  # the customer's file name is never used on disk
    with pytest.raises(NotImplementedError):
        exemption.certificate.url  # noqa: B018 — private files have no URL


def test_tax_exemption_submit_rejects_renamed_executable(customer):
    with pytest.raises(CertificateInvalid, match="PDF, PNG or JPEG"):
        _submit(customer, data=EXE_BYTES, name="certificate.pdf")
    assert not TaxExemption.objects.exists()


def test_tax_exemption_submit_rejects_oversized_file(customer):
    with pytest.raises(CertificateInvalid, match="5 MB"):
        _submit(customer, data=PDF_BYTES + b"0" * MAX_CERTIFICATE_BYTES)
    assert not TaxExemption.objects.exists()


def test_tax_exemption_submit_accepts_exactly_5_mb(customer):
    data = PDF_BYTES + b"0" * (MAX_CERTIFICATE_BYTES - len(PDF_BYTES))
    assert _submit(customer, data=data).certificate_size == MAX_CERTIFICATE_BYTES


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"jurisdictions": []}, "jurisdictions"),
        ({"jurisdictions": ["California"]}, "jurisdictions"),
        ({"exemption_type": "because"}, "exemption_type"),
        ({"certificate_number": "  "}, "certificate_number"),
        ({"expires_on": days_from_today(-1)}, "expires_on"),  # already over: expires_on is the last valid day
    ],
)
def test_tax_exemption_submit_validates_fields(customer, overrides, field):
    with pytest.raises(ExemptionInvalid) as excinfo:
        _submit(customer, **overrides)
    assert excinfo.value.field == field
    assert not TaxExemption.objects.exists()


def test_tax_exemption_certificate_of_another_customer_is_not_found(customer):
    exemption = _submit(customer)
    stranger = CustomerFactory()
    with pytest.raises(NotFound):
        tax_exemption_certificate_for_customer(customer=stranger, exemption_id=exemption.pk)
    data, content_type, name = tax_exemption_certificate_for_customer(customer=customer, exemption_id=exemption.pk)
    assert (data, content_type, name) == (PDF_BYTES, "application/pdf", "tax-certificate-CA-RESALE-42.pdf")


def test_tax_exemption_pending_holds_the_invoice(customer, subscription, ca_tax, staff):
    established(customer, staff)
    _submit(customer)
    invoice = _held_invoice(subscription)
    assert invoice.status == InvoiceStatus.HELD
    assert [r["code"] for r in invoice.hold_reasons] == [HoldReason.EXEMPTION_PENDING]
    assert invoice.number is None
    # and staff cannot push it out with tax while the review is pending
    from billing.exceptions import InvoiceNotIssuable
    from billing.services.invoices import invoice_approve_and_issue

    with pytest.raises(InvoiceNotIssuable, match="awaiting review"):
        invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)


def test_tax_exemption_approval_recomputes_and_releases_held_invoice(
    customer, subscription, ca_tax, staff, django_capture_on_commit_callbacks
):
    established(customer, staff)
    exemption = _submit(customer)
    invoice = _held_invoice(subscription)
    assert invoice.tax_minor == 1088
    with django_capture_on_commit_callbacks(execute=True):
        tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.tax_minor == 0
    assert invoice.total_minor == 15_000
    assert invoice.exemption_id == exemption.pk
    assert "Tax exempt: resale exemption certificate CA-RESALE-42 for US-CA" in invoice.exemption_wording
    assert all(line.tax_rate == 0 for line in invoice.lines.all())


def test_tax_exemption_exempt_customer_gets_zero_tax_and_wording(customer, subscription, ca_tax, staff):
    established(customer, staff)
    exemption = _submit(customer)
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    invoice = _held_invoice(subscription)
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.tax_minor, invoice.tax_lines.count()) == (0, 0)
    assert invoice.exemption_reference == "CA-RESALE-42"
    assert invoice.exemption_wording


def test_tax_exemption_for_another_state_does_not_apply(customer, subscription, ca_tax, staff):
    established(customer, staff)
    exemption = _submit(customer, jurisdictions=["US-NY"])
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    invoice = _held_invoice(subscription)
    assert invoice.tax_minor == 1088 and not invoice.exemption_wording


def test_tax_exemption_submit_accepts_a_certificate_whose_last_valid_day_is_today(customer):
    exemption = _submit(customer, expires_on=today())
    assert exemption.status == ExemptionStatus.SUBMITTED and exemption.expires_on == today()


def test_tax_exemption_expiring_within_period_holds(customer, ca_tax, staff):
    # given a period that starts today and an exemption whose last valid day is today
    established(customer, staff)
    subscription = SubscriptionFactory(customer=customer, current_period_start=day_start())
    exemption = _submit(customer, expires_on=today())
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    # then the period's invoice is exempt on its tax date but held: the certificate lapses before the period ends
    invoice = _held_invoice(subscription)
    assert invoice.tax_minor == 0
    assert [r["code"] for r in invoice.hold_reasons] == [HoldReason.EXEMPTION_EXPIRES]
    assert f"valid until {today().isoformat()}" in invoice.hold_reasons[0]["message"]


def test_tax_exemption_valid_through_the_periods_last_day_does_not_hold(customer, ca_tax, staff):
    established(customer, staff)
    subscription = SubscriptionFactory(customer=customer, current_period_start=day_start())
    last_day = subscription.current_period_end.date() - timedelta(days=1)
    exemption = _submit(customer, expires_on=last_day)
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    invoice = _held_invoice(subscription)
    assert invoice.status == InvoiceStatus.OPEN and invoice.tax_minor == 0
    assert f"valid until {last_day.isoformat()}" in invoice.exemption_wording


def test_tax_exemption_rejection_needs_reason_and_releases_with_tax(
    customer, subscription, ca_tax, staff, django_capture_on_commit_callbacks
):
    established(customer, staff)
    exemption = _submit(customer)
    invoice = _held_invoice(subscription)
    with pytest.raises(ExemptionInvalid):
        tax_exemption_reject(exemption_id=exemption.pk, reviewer=staff, reason=" ")
    with django_capture_on_commit_callbacks(execute=True):
        exemption = tax_exemption_reject(
            exemption_id=exemption.pk, reviewer=staff, reason="The certificate is not signed."
        )
    assert (exemption.status, exemption.decision_reason) == ("rejected", "The certificate is not signed.")
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.status == InvoiceStatus.OPEN and invoice.tax_minor == 1088


def test_tax_exemption_forbidden_transitions_raise(customer, staff):
    exemption = _submit(customer)
    tax_exemption_reject(exemption_id=exemption.pk, reviewer=staff, reason="Illegible")
    with pytest.raises(InvalidTransition):
        tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)


def test_tax_exemption_replacement_supersedes_and_keeps_history(customer, staff):
    first = _submit(customer)
    tax_exemption_approve(exemption_id=first.pk, reviewer=staff)
    second = _submit(customer, certificate_number="CA-RESALE-43")
    first.refresh_from_db()
    assert first.status == ExemptionStatus.APPROVED  # stays in force until the replacement is decided
    assert tax_exemption_current_for_customer(customer=customer) == second
    tax_exemption_approve(exemption_id=second.pk, reviewer=staff)
    first.refresh_from_db()
    assert (first.status, first.replaced_by) == (ExemptionStatus.SUPERSEDED, second)
    assert list(first.status_changes.values_list("to_status", flat=True)) == ["submitted", "approved", "superseded"]


def test_tax_exemptions_expire_due_is_idempotent(customer, staff):
    last_valid_day = days_from_today(40)
    exemption = _submit(customer, expires_on=last_valid_day)
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    assert tax_exemptions_expire_due(today=last_valid_day - timedelta(days=1)) == 0
    assert tax_exemptions_expire_due(today=last_valid_day) == 0  # still valid on its last day
    assert tax_exemptions_expire_due(today=last_valid_day + timedelta(days=1)) == 1
    assert tax_exemptions_expire_due(today=last_valid_day + timedelta(days=2)) == 0
    exemption.refresh_from_db()
    assert exemption.status == ExemptionStatus.EXPIRED


def test_tax_exemption_reminders_30_and_7_days_before_each_once(customer, owner, staff):
    MembershipFactory(customer=customer, role="member")  # members are not reminded
    expires_on = days_from_today(60)
    exemption = _submit(customer, expires_on=expires_on)
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=staff)
    mail.outbox.clear()

    def before(days):
        return expires_on - timedelta(days=days)

    assert tax_exemption_send_reminders(today=before(31)) == 0
    assert tax_exemption_send_reminders(today=before(30)) == 1
    assert tax_exemption_send_reminders(today=before(29)) == 0
    assert tax_exemption_send_reminders(today=before(7)) == 1
    assert tax_exemption_send_reminders(today=before(6)) == 0
    assert len(mail.outbox) == 2
    assert "expires in 30 days" in mail.outbox[0].subject
    assert sorted(mail.outbox[0].to) == ["ap@acme.test", "owner@acme.test"]


def test_tax_exemption_submitted_by_one_customer_does_not_hold_another(customer, staff, ca_tax):
    other = CustomerFactory()
    BillingProfileFactory(customer=other)
    established(other, staff)
    _submit(customer)
    invoice = _held_invoice(SubscriptionFactory(customer=other))
    assert invoice.status == InvoiceStatus.OPEN
    assert timedelta(0) <= timedelta(0)
