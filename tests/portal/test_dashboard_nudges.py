"""Dashboard adoption and nudges (issue 20, customer-facing): unassigned seats, an unpaid invoice coming due, a
tax-exemption certificate about to expire — each linking to where the customer acts, within the dashboard's query
budget. The clock is pinned; every date is relative to it."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from billing.models import ExemptionStatus, Invoice, TaxExemption
from subscriptions.models import SeatAssignment
from tests.portal.conftest import make_account, make_invoice

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # pinned: every date below is relative to it


@pytest.fixture
def account(db, time_machine):
    time_machine.move_to(NOW, tick=False)
    return make_account()


def _dashboard(client, account):
    response = client.get(reverse("portal:customer_dashboard", args=[account.customer.pk]))
    assert response.status_code == 200
    return response


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def _exemption(account, *, expires_in_days, status=ExemptionStatus.APPROVED, number="CA-RESALE-42"):
    return TaxExemption.objects.create(
        customer=account.customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number=number,
        expires_on=(NOW + timedelta(days=expires_in_days)).date(),
        certificate="exemptions/test.pdf",
        certificate_content_type="application/pdf",
        certificate_size=100,
        certificate_sha256="0" * 64,
        status=status,
        decided_at=NOW - timedelta(days=200) if status == ExemptionStatus.APPROVED else None,
    )


def _invoice_due_in(account, days):
    """An issued, open invoice due `days` from now (negative: overdue)."""
    return make_invoice(account.customer, issued_at=NOW - timedelta(days=30 - days))


def test_dashboard_shows_adoption_and_links_unassigned_seats_to_the_seats_page(account, client_for):
    response = _dashboard(client_for(account.owner), account)
    text = _text(response)
    assigned = SeatAssignment.objects.filter(subscription=account.subscription).count()
    assert f"You use {assigned} of 10 seats." in text
    seats_url = reverse("portal:seats", args=[account.customer.pk])
    assert re.search(
        rf'data-testid="nudge-unassigned-seats">{10 - assigned} seats on Team unassigned — <a href="{seats_url}"',
        response.text,
    )


def test_dashboard_no_unassigned_seat_nudge_when_every_seat_is_held(account, client_for):
    account.subscription.seats = SeatAssignment.objects.filter(subscription=account.subscription).count()
    account.subscription.save()
    response = _dashboard(client_for(account.owner), account)
    assert "nudge-unassigned-seats" not in response.text


@pytest.mark.parametrize("role", ["owner", "billing_admin"])
def test_dashboard_nudges_billing_roles_about_an_unpaid_invoice_coming_due(account, client_for, role):
    invoice = _invoice_due_in(account, 5)
    response = _dashboard(client_for(account.user(role)), account)
    detail = reverse("portal:invoice_detail", args=[account.customer.pk, invoice.pk])
    due = NOW + timedelta(days=5)  # a US customer: "Jun 20, 2026", as the US writes dates
    assert f"Invoice {invoice.number} is unpaid; it is due on {due:%b} {due.day}, {due.year}" in _text(response)
    assert f'href="{detail}"' in response.text
    assert 'data-testid="overdue-invoice"' not in response.text


def test_dashboard_unpaid_nudge_not_for_members_nor_paid_invoices(account, client_for):
    invoice = _invoice_due_in(account, 5)
    assert "nudge-unpaid-invoice" not in _dashboard(client_for(account.member), account).text
    Invoice.objects.filter(pk=invoice.pk).update(status="paid", amount_due_minor=0)
    assert "nudge-unpaid-invoice" not in _dashboard(client_for(account.owner), account).text


def test_dashboard_overdue_invoice_shows_the_banner_not_a_second_nudge(account, client_for):
    _invoice_due_in(account, -3)
    response = _dashboard(client_for(account.owner), account)
    assert 'data-testid="overdue-invoice"' in response.text
    assert "nudge-unpaid-invoice" not in response.text


@pytest.mark.parametrize("days, shown", [(0, True), (12, True), (30, True), (31, False), (-1, False)])
def test_dashboard_nudges_a_certificate_expiring_within_30_days(account, client_for, days, shown):
    _exemption(account, expires_in_days=days)
    response = _dashboard(client_for(account.owner), account)
    assert ("nudge-exemption-expiring" in response.text) is shown
    if shown:
        tax_url = reverse("portal:tax", args=[account.customer.pk])
        assert f'href="{tax_url}"' in response.text
        when = "today" if days == 0 else f"in {days} days"
        assert f"Your tax-exemption certificate expires {when}" in _text(response)


def test_dashboard_no_certificate_nudge_once_a_replacement_is_submitted_or_for_members(account, client_for):
    _exemption(account, expires_in_days=10)
    assert "nudge-exemption-expiring" not in _dashboard(client_for(account.member), account).text
    _exemption(account, expires_in_days=400, status=ExemptionStatus.SUBMITTED, number="CA-RESALE-43")
    assert "nudge-exemption-expiring" not in _dashboard(client_for(account.owner), account).text


@pytest.mark.usefixtures("page_cache_off")  # counts the page as computed
def test_dashboard_nudges_cost_no_query_and_never_show_the_health_score(
    account, client_for, django_assert_max_num_queries
):
    client = client_for(account.owner)
    _dashboard(client, account)
    with django_assert_max_num_queries(10) as before:
        _dashboard(client, account)
    _exemption(account, expires_in_days=10)
    for days in (3, 6, 9):
        _invoice_due_in(account, days)
    with django_assert_max_num_queries(len(before.captured_queries)):
        response = _dashboard(client, account)
    assert "nudge-exemption-expiring" in response.text and "nudge-unpaid-invoice" in response.text
    assert "health" not in _text(response).lower()
