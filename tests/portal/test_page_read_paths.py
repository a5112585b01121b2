"""The pages' cheaper read paths (issue 18) show the same as before. Query shapes built once per process
(portal/prebuilt.py): the shape is shared, the rows never are — a page shows the state of the moment it is asked, for
each day and each user. The seats page takes the signed-in user's own seat from the people list it shows."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from billing.models import CreditNote, TaxRate
from billing.services.exemptions import tax_exemption_approve, tax_exemption_submit
from portal.prebuilt import prebuilt
from subscriptions.models import SeatAssignment, Sku, SkuKind, Subscription
from subscriptions.services.changes import subscription_change_seats_apply
from tests.factories import BillingProfileFactory, TaxRateFactory, UserFactory
from tests.portal.conftest import make_account, make_invoice

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # pinned: every date below is relative to it


@pytest.fixture
def account(db, time_machine):
    time_machine.move_to(NOW, tick=False)
    return make_account()


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def test_a_prebuilt_shape_is_built_once_and_never_holds_rows(account):
    builds = []

    @prebuilt
    def shape(status):
        builds.append(status)
        return Subscription.objects.filter(status=status)

    first = list(shape("active"))
    Subscription.objects.filter(pk=account.subscription.pk).update(status="canceled")
    assert [s.pk for s in first] == [account.subscription.pk]
    assert list(shape("active")) == []  # a fresh clone each time: no cached rows
    assert [s.pk for s in shape("canceled")] == [account.subscription.pk]
    assert builds == ["active", "canceled"]  # once per variant


def test_seat_preview_shows_the_current_seats_after_a_change_between_two_previews(account, client_for):
    client = client_for(account.owner)
    url = reverse("portal:change_preview_seats", args=[account.customer.pk])
    payload = {"subscription_id": account.subscription.pk, "seats": "12"}
    before = client.post(url, payload, headers={"HX-Request": "true"})
    assert before.status_code == 200 and "$170.00" in before.text  # 10 → 12 seats: 100.00 + 7 × 10.00
    subscription_change_seats_apply(
        subscription_id=account.subscription.pk, seats=15, expected_version=account.subscription.version, actor=None
    )
    after = client.post(url, payload, headers={"HX-Request": "true"})
    assert after.status_code == 200
    version = re.search(r'name="version" value="(\d+)"', after.text).group(1)
    assert int(version) == Subscription.objects.get(pk=account.subscription.pk).version
    # 15 → 12 seats is a decrease now: the recurring amount of 12 seats stays, due now is no longer the increase's.
    assert re.search(r'name="amount_due_now_minor" value="(-?\d+)"', after.text).group(1) != re.search(
        r'name="amount_due_now_minor" value="(-?\d+)"', before.text
    ).group(1)


def test_dashboard_shape_follows_the_day_and_the_user(account, client_for, time_machine):
    # Due in 2 days: a nudge today; the day after it is due, the overdue banner instead.
    invoice = make_invoice(account.customer, issued_at=NOW - timedelta(days=28))
    client = client_for(account.owner)
    url = reverse("portal:customer_dashboard", args=[account.customer.pk])
    today = client.get(url)
    assert f"Invoice {invoice.number} is unpaid" in _text(today)
    assert 'data-testid="overdue-invoice"' not in today.text
    time_machine.move_to(NOW + timedelta(days=3), tick=False)
    later = client.get(url)
    assert 'data-testid="overdue-invoice"' in later.text
    assert "nudge-unpaid-invoice" not in later.text
    # "Holds a seat" is the signed-in user's own: the member without a seat is told so, the owner is not.
    SeatAssignment.objects.filter(subscription=account.subscription, user=account.member).delete()
    assert "You hold a seat." in _text(client.get(url))
    assert "You do not hold a seat on this package." in _text(client_for(account.member).get(url))


@pytest.mark.parametrize("role", ["owner", "billing_admin"])
def test_seats_page_tells_a_manager_whether_they_hold_a_seat(account, client_for, role):
    user = account.user(role)
    client = client_for(user)
    url = reverse("portal:seats", args=[account.customer.pk])
    SeatAssignment.objects.get_or_create(subscription=account.subscription, user=user)
    assert "You hold a seat." in _text(client.get(url))
    SeatAssignment.objects.filter(subscription=account.subscription, user=user).delete()
    text = _text(client.get(url))
    assert "You hold a seat." not in text and "You do not hold a seat yet." in text


def test_seats_page_tells_a_member_whether_they_hold_a_seat(account, client_for):
    client = client_for(account.member)
    url = reverse("portal:seats", args=[account.customer.pk])
    assert "You hold a seat." in _text(client.get(url))
    SeatAssignment.objects.filter(subscription=account.subscription, user=account.member).delete()
    assert "You do not hold a seat yet; ask an owner" in _text(client.get(url))


def _credit_note(account, invoice, n, *, refund_due_minor=0):
    return CreditNote.objects.create(
        invoice=invoice,
        customer=account.customer,
        number=f"CN-2026-{n:06d}",
        series="CN-2026",
        currency="USD",
        reason_code="wrong_seat_count",
        subtotal_minor=1_000,
        tax_minor=0,
        total_minor=1_000,
        refund_due_minor=refund_due_minor,
        issued_at=NOW,
    )


def test_invoice_list_reads_only_what_it_shows_and_stays_constant_in_credit_notes(
    account, client_for, django_assert_max_num_queries
):
    invoice = make_invoice(account.customer, issued_at=NOW - timedelta(days=3))
    _credit_note(account, invoice, 1)
    _credit_note(account, invoice, 2, refund_due_minor=1_000)
    client = client_for(account.owner)
    url = reverse("portal:invoices", args=[account.customer.pk])
    with django_assert_max_num_queries(10) as captured:
        page = client.get(url)
    text = _text(page)
    assert invoice.number in text and "CN-2026-000001" in text and "Wrong seat count" in text
    assert "Credited against the amount due" in text  # nothing due back
    assert "$10.00 to be refunded" in text  # due back, no refund recorded yet
    assert text.count(invoice.number) >= 3  # its own row and each note's "for invoice" link
    for n in range(3, 8):
        _credit_note(account, invoice, n)
    with django_assert_max_num_queries(len(captured.captured_queries)):
        assert "CN-2026-000007" in client.get(url).text


def _seat_preview(client, account, seats="12"):
    url = reverse("portal:change_preview_seats", args=[account.customer.pk])
    response = client.post(url, {"subscription_id": account.subscription.pk, "seats": seats}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200, response.text
    return response


@pytest.mark.usefixtures("page_cache_off")  # counts the page as computed
def test_the_lean_seat_preview_takes_cached_skus_and_follows_a_catalog_edit(
    account, client_for, django_assert_max_num_queries
):
    """The live seat preview loads no SKU subqueries: the package's SKUs come from the per-package cache, which a
    SKU edit invalidates at once (the catalog token), so the preview's tax follows the catalog."""
    cache.clear()
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()  # CA sales tax 7.25 % on SaaS
    client = client_for(account.owner)
    _seat_preview(client, account)  # the first visit stores the chosen customer in the session
    cache.clear()
    with django_assert_max_num_queries(10) as cold:
        taxed = _seat_preview(client, account)
    sku_queries = [q for q in cold.captured_queries if "subscriptions_packagecomponent" in q["sql"]]
    assert len(sku_queries) == 1 and "SELECT" in sku_queries[0]["sql"] and "COALESCE" not in sku_queries[0]["sql"]
    with django_assert_max_num_queries(len(cold.captured_queries) - 1) as warm:
        assert _text(_seat_preview(client, account)) == _text(taxed)
    assert not any("subscriptions_packagecomponent" in q["sql"] for q in warm.captured_queries)
    assert "($182.33 with tax)" in _text(taxed)  # 100.00 + 7 × 10.00 seats, plus 7.25 % CA sales tax

    seat_sku = Sku.objects.get(kind=SkuKind.RECURRING_PER_SEAT)
    seat_sku.tax_category = "services"  # the CA rate taxes SaaS only: the seats are no longer taxed
    seat_sku.save()
    assert "($182.33 with tax)" not in _text(_seat_preview(client, account))


def test_the_lean_seat_preview_reads_rates_from_the_cache_and_exemptions_only_when_there_are_some(
    account, client_for, django_assert_max_num_queries
):
    """Per keystroke: no tax-rate query once the rates are cached (a rate edit renews the rates token, so the
    preview follows it), and no exemption query for a customer without exemptions; once one is approved, the
    preview reads it and is untaxed."""
    cache.clear()
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()  # CA sales tax 7.25 % on SaaS
    client = client_for(account.owner)
    assert "($182.33 with tax)" in _text(_seat_preview(client, account))
    with django_assert_max_num_queries(10) as warm:
        _seat_preview(client, account)
    assert not any(
        q["sql"].startswith(('SELECT "billing_taxrate".', 'SELECT "billing_taxexemption".'))
        for q in warm.captured_queries
    )

    rate = TaxRate.objects.get(region="CA")
    rate.rate = "10.0000"
    rate.save()
    assert "($187.00 with tax)" in _text(_seat_preview(client, account))  # 170.00 + 10 %

    exemption = tax_exemption_submit(
        customer=account.customer,
        jurisdictions=["US-CA"],
        exemption_type="resale",
        certificate_number="CA-RESALE-1",
        expires_on=timezone.localdate() + timedelta(days=400),
        certificate=ContentFile(b"%PDF-1.4 certificate", name="certificate.pdf"),
        actor=account.owner,
    )
    assert "($187.00 with tax)" in _text(_seat_preview(client, account))  # submitted, not approved: still taxed
    tax_exemption_approve(exemption_id=exemption.pk, reviewer=UserFactory(is_staff=True))
    assert "with tax)" not in _text(_seat_preview(client, account))
