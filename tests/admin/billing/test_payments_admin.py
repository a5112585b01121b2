"""Back office, money side (issue 10): retrying a failed Stripe event, recording bank transfers and refunds, editing
billing profiles — per role, through the admin and the real services (Stripe is localstripe on 127.0.0.1)."""

import pytest
from django.urls import reverse

from billing.models import (
    BillingProfile,
    CreditNote,
    Invoice,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    Refund,
    RefundStatus,
    StripeEvent,
    StripeEventStatus,
)
from billing.services import payments
from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create
from billing.services.stripe_events import stripe_event_process
from subscriptions.models import AuditEvent
from tests.billing.stripe_support import CARD_OK, confirm_card_setup
from tests.factories import BillingProfileFactory, CustomerFactory, TaxRateFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(db):
    TaxRateFactory()  # CA sales tax 7.25 % on SaaS
    customer = CustomerFactory(name="Acme", legal_name="Acme Incorporated", country="US", region="CA")
    BillingProfileFactory(customer=customer, billing_emails=["ap@acme.test"])
    return customer


def _issued(customer, amount: int = 10_000) -> Invoice:
    draft = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Consulting", unit_amount_minor=amount)]
    )
    return invoice_approve_and_issue(invoice_id=draft.pk, actor=UserFactory(is_staff=True))


def _invoice_action(invoice, name: str) -> str:
    return reverse("admin:billing_invoice_action", args=[invoice.pk, name])


# --- Stripe events ----------------------------------------------------------------------------------------------------


def _failed_setup_intent_event(server, customer, settings) -> StripeEvent:
    """A `setup_intent.succeeded` event whose processing failed because Stripe could not be reached."""
    setup = payments.payment_method_setup_start(customer_id=customer.pk)
    assert confirm_card_setup(server, client_secret=setup.client_secret, number=CARD_OK)["status"] == "succeeded"
    event = StripeEvent.objects.create(
        stripe_event_id="evt_admin_retry_1",
        type="setup_intent.succeeded",
        object_id=setup.setup_intent_id,
        stripe_created=1,
        payload={
            "id": "evt_admin_retry_1",
            "type": "setup_intent.succeeded",
            "data": {"object": {"id": setup.setup_intent_id, "object": "setup_intent"}},
        },
    )
    settings.STRIPE_API_BASE = "http://127.0.0.1:9"  # nothing listens there: Stripe is "down"
    stripe_event_process(event_id=event.pk)
    settings.STRIPE_API_BASE = server.url
    event.refresh_from_db()
    assert event.status == StripeEventStatus.FAILED and event.error
    return event


def test_billing_staff_retry_a_failed_stripe_event_from_admin_and_it_is_processed(
    stripe_server, customer, settings, billing_client, billing_user
):
    # given: a card saved at Stripe whose webhook event failed while Stripe was unreachable
    event = _failed_setup_intent_event(stripe_server, customer, settings)
    assert not PaymentMethod.objects.filter(customer=customer).exists()
    changelist = billing_client.get(reverse("admin:billing_stripeevent_changelist"))
    assert 'value="retry_selected"' in changelist.text
    assert billing_client.get(reverse("admin:billing_stripeevent_change", args=[event.pk])).status_code == 200

    # when: billing staff retry it from the list
    response = billing_client.post(
        reverse("admin:billing_stripeevent_changelist"),
        {"action": "retry_selected", "_selected_action": [event.pk]},
        follow=True,
    )

    # then: processed now, the card is recorded, and the retry is audited with who did it
    assert "evt_admin_retry_1: processed." in response.text.lower()
    event.refresh_from_db()
    assert (event.status, event.error, event.attempts) == (StripeEventStatus.PROCESSED, "", 2)
    assert PaymentMethod.objects.filter(customer=customer, last4="4242").count() == 1
    assert AuditEvent.objects.filter(action="stripe_event.retried", actor=billing_user).count() == 1


def test_support_agents_cannot_retry_stripe_events(support_client, customer):
    event = StripeEvent.objects.create(
        stripe_event_id="evt_admin_retry_2", type="customer.created", stripe_created=1, payload={}, status="failed"
    )

    response = support_client.post(
        reverse("admin:billing_stripeevent_changelist"), {"action": "retry_selected", "_selected_action": [event.pk]}
    )

    assert response.status_code == 403
    event.refresh_from_db()
    assert event.status == StripeEventStatus.FAILED and event.attempts == 0
    assert not AuditEvent.objects.filter(action="stripe_event.retried").exists()


# --- Bank transfers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("client_fixture", ["billing_client", "super_client"])
def test_billing_staff_and_superusers_record_a_bank_transfer(request, client_fixture, customer):
    client = request.getfixturevalue(client_fixture)
    invoice = _issued(customer)
    page = client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    assert 'id="mark-paid-form"' in page.text

    client.post(_invoice_action(invoice, "mark_paid"), {"amount": "50.00", "reference": "BANK-IN-1"})
    client.post(_invoice_action(invoice, "mark_paid"), {"amount": "57.25", "reference": "BANK-IN-2"})

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid_minor, invoice.amount_due_minor) == (InvoiceStatus.PAID, 10_725, 0)
    assert list(Payment.objects.filter(invoice=invoice).values_list("reference", "amount_minor")) == [
        ("BANK-IN-1", 5_000),
        ("BANK-IN-2", 5_725),
    ]
    assert AuditEvent.objects.filter(action="payment.recorded", customer=customer).count() == 2


def test_support_agents_see_no_transfer_form_and_a_crafted_post_is_forbidden(support_client, customer):
    invoice = _issued(customer)

    page = support_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk]))
    response = support_client.post(_invoice_action(invoice, "mark_paid"), {"amount": "107.25", "reference": "X"})

    assert page.status_code == 200 and 'id="mark-paid-form"' not in page.text
    assert response.status_code == 403
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and not Payment.objects.exists()


# --- Refunds of credit notes ------------------------------------------------------------------------------------------


def test_billing_staff_credit_a_transfer_paid_invoice_then_record_the_refund_transfer(
    billing_client, billing_user, customer, settings
):
    settings.STRIPE_SECRET_KEY = ""
    invoice = _issued(customer)
    billing_client.post(_invoice_action(invoice, "mark_paid"), {"amount": "107.25", "reference": "BANK-IN-3"})
    billing_client.post(
        _invoice_action(invoice, "credit_note"),
        {"reason_code": "goodwill", "reason_text": "Outage", f"credit_{invoice.lines.get().pk}": "20.00"},
    )
    note = CreditNote.objects.get(invoice=invoice)
    url = reverse("admin:billing_creditnote_change", args=[note.pk])

    page = billing_client.get(url)
    assert note.refund_due_minor == 2_145
    assert "owed by bank transfer" in page.text and 'id="refund-transfer-form"' in page.text

    refund_url = reverse("admin:billing_creditnote_refund", args=[note.pk, "transfer"])
    missing = billing_client.post(refund_url, {"reference": ""}, follow=True)
    assert "reference" in missing.text and not Refund.objects.exists()
    billing_client.post(refund_url, {"reference": "BANK-OUT-1"})
    twice = billing_client.post(refund_url, {"reference": "BANK-OUT-1"}, follow=True)

    refund = Refund.objects.get(credit_note=note)
    assert (refund.status, refund.amount_minor, refund.reference, refund.recorded_by) == (
        RefundStatus.SUCCEEDED,
        2_145,
        "BANK-OUT-1",
        billing_user,
    )
    assert "already refunded by transfer" in twice.text
    assert "paid by transfer (BANK-OUT-1)" in billing_client.get(url).text
    assert AuditEvent.objects.filter(action="refund.recorded", actor=billing_user).count() == 1


def test_support_agents_cannot_record_refunds(support_client, customer, settings):
    settings.STRIPE_SECRET_KEY = ""
    invoice = _issued(customer)
    payments.payment_record_manual(invoice_id=invoice.pk, amount_minor=10_725, reference="BANK-IN-4", actor=None)
    from billing.services.credit_notes import credit_note_create

    note = credit_note_create(invoice_id=invoice.pk, reason_code="goodwill", reason_text="Outage")

    page = support_client.get(reverse("admin:billing_creditnote_change", args=[note.pk]))
    response = support_client.post(
        reverse("admin:billing_creditnote_refund", args=[note.pk, "transfer"]), {"reference": "BANK-OUT-2"}
    )

    assert page.status_code == 200 and 'id="refund-transfer-form"' not in page.text
    assert response.status_code == 403
    assert not Refund.objects.exists()


# --- Billing profiles -------------------------------------------------------------------------------------------------


def _profile_form(profile: BillingProfile, **changes) -> dict:
    data = {
        "legal_name": profile.legal_name,
        "billing_emails": ", ".join(profile.billing_emails),
        "address_line1": profile.address_line1,
        "address_line2": profile.address_line2,
        "city": profile.city,
        "region": profile.region,
        "postal_code": profile.postal_code,
        "country": profile.country,
        "tax_id": profile.tax_id,
        "currency": profile.currency,
        "payment_terms_days": profile.payment_terms_days,
        "invoice_language": profile.invoice_language,
        "standing_po_number": profile.standing_po_number,
        "change_billing_mode": profile.change_billing_mode,
        "_save": "Save",
    }
    if profile.requires_po:
        data["requires_po"] = "on"
    if profile.e_invoicing:  # the page shows the e-invoicing box ticked, so a browser posts it
        data["e_invoicing"] = "on"
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def test_billing_staff_edit_a_billing_profile_through_the_service_and_it_is_audited(
    billing_client, billing_user, customer
):
    profile = customer.billing_profile
    url = reverse("admin:billing_billingprofile_change", args=[profile.pk])
    assert 'name="legal_name"' in billing_client.get(url).text

    response = billing_client.post(
        url,
        _profile_form(
            profile,
            legal_name="  Acme Holdings Inc. ",
            billing_emails="AP@acme.test; invoices@acme.test",
            region="ny",
            payment_terms_days="45",
        ),
    )

    assert response.status_code == 302
    profile.refresh_from_db()
    assert (profile.legal_name, profile.region, profile.payment_terms_days) == ("Acme Holdings Inc.", "NY", 45)
    assert profile.billing_emails == ["ap@acme.test", "invoices@acme.test"]
    event = AuditEvent.objects.get(action="billing.profile_updated", customer=customer)
    assert event.actor == billing_user
    assert event.before["legal_name"] == "Acme Incorporated"
    assert event.after == {
        "legal_name": "Acme Holdings Inc.",
        "billing_emails": ["ap@acme.test", "invoices@acme.test"],
        "region": "NY",
        "payment_terms_days": 45,
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tax_id": "DE123456789", "country": "DE"}, "not a valid EU VAT number"),
        ({"billing_emails": "ap@acme.test, not-an-email"}, "not-an-email is not a valid e-mail address"),
        ({"country": "D1"}, "two-letter ISO code"),
        ({"currency": "GBP"}, "Invoices can be issued in"),
    ],
)
def test_billing_profile_admin_shows_validation_errors_and_saves_nothing(billing_client, customer, changes, message):
    profile = customer.billing_profile
    url = reverse("admin:billing_billingprofile_change", args=[profile.pk])

    response = billing_client.post(url, _profile_form(profile, **changes))

    assert response.status_code == 200  # the form again, with the problem
    assert message in response.text
    assert "errornote" in response.text
    profile.refresh_from_db()
    assert (profile.country, profile.tax_id, profile.currency) == ("US", "", "USD")
    assert not AuditEvent.objects.filter(action="billing.profile_updated").exists()


def test_billing_profile_admin_normalises_a_valid_vat_number(billing_client, customer):
    profile = customer.billing_profile

    billing_client.post(
        reverse("admin:billing_billingprofile_change", args=[profile.pk]),
        _profile_form(profile, country="DE", region="", tax_id="DE 136 695 976", currency="EUR"),
    )

    profile.refresh_from_db()
    assert (profile.tax_id, profile.tax_id_valid, profile.country) == ("DE136695976", True, "DE")


def test_support_agents_read_billing_profiles_but_cannot_edit_them(support_client, customer):
    profile = customer.billing_profile
    url = reverse("admin:billing_billingprofile_change", args=[profile.pk])

    page = support_client.get(url)
    response = support_client.post(url, _profile_form(profile, legal_name="Hijacked"))

    assert page.status_code == 200 and 'name="legal_name"' not in page.text and "Acme Incorporated" in page.text
    assert response.status_code == 403
    profile.refresh_from_db()
    assert profile.legal_name == "Acme Incorporated"


def test_nobody_adds_or_deletes_billing_profiles_in_admin(super_client, customer):
    profile = customer.billing_profile

    assert super_client.get(reverse("admin:billing_billingprofile_add")).status_code == 403
    assert super_client.get(reverse("admin:billing_billingprofile_delete", args=[profile.pk])).status_code == 403


def test_billing_profile_admin_edit_updates_the_stripe_customer(
    stripe_server, billing_client, customer, django_capture_on_commit_callbacks
):
    link = payments.stripe_customer_ensure(customer_id=customer.pk)
    profile = customer.billing_profile

    with django_capture_on_commit_callbacks(execute=True):
        billing_client.post(
            reverse("admin:billing_billingprofile_change", args=[profile.pk]),
            _profile_form(profile, legal_name="Acme Holdings Inc.", city="Palo Alto"),
        )

    remote = stripe_server.get(f"/v1/customers/{link.stripe_customer_id}")
    assert (remote["name"], remote["address"]["city"]) == ("Acme Holdings Inc.", "Palo Alto")


def test_customer_page_links_billing_staff_to_the_billing_profile_editor(billing_client, support_client, customer):
    url = reverse("admin:subscriptions_customer_change", args=[customer.pk])

    assert 'id="c360-edit-billing-profile"' in billing_client.get(url).text
    assert 'id="c360-edit-billing-profile"' not in support_client.get(url).text
