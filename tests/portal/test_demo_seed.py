"""`python manage.py seed_demo` (what `make run` loads): history, today's period, idempotency, and a change that works
right away."""

import calendar
import re
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.apps import apps
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.models import ExemptionStatus, Invoice, InvoiceKind, InvoiceStatus, TaxExemption
from billing.services.changes import change_apply, change_preview
from subscriptions import clock
from subscriptions.models import Customer, Membership, Role, SeatAssignment, Subscription, SubscriptionStatus, User

pytestmark = pytest.mark.django_db

DEMO_CUSTOMERS = ["Acme Inc", "Globex Corp", "Initech GmbH", "Umbrella LLC"]


@pytest.fixture
def demo(db):
    call_command("seed_demo", verbosity=0)


def _snapshot() -> dict:
    """Row counts of every model of ours, plus what each invoice says (number, status, amounts, dates)."""
    counts = {
        model._meta.label: model.objects.count()
        for app in ("subscriptions", "billing", "portal")
        for model in apps.get_app_config(app).get_models()
        if model._meta.managed  # portal.RevenueMetrics has no table: it only holds a permission
    }
    invoices = sorted(
        Invoice.objects.values_list("number", "status", "total_minor", "amount_due_minor", "issued_at", "due_on")
    )
    subscriptions = sorted(
        Subscription.objects.values_list("customer__name", "seats", "version", "current_period_start")
    )
    return {"counts": counts, "invoices": invoices, "subscriptions": subscriptions}


def test_seed_demo_every_subscription_is_in_the_period_that_contains_today(demo):
    now = timezone.now()
    subscriptions = Subscription.objects.filter(customer__name__in=DEMO_CUSTOMERS).select_related("package", "customer")
    assert subscriptions.count() == 4
    for subscription in subscriptions:
        assert subscription.status == SubscriptionStatus.ACTIVE, subscription.customer.name
        assert subscription.current_period_start <= now < subscription.current_period_end, subscription.customer.name
    acme = subscriptions.get(customer__name="Acme Inc")
    assert (acme.package.slug, acme.interval, acme.seats) == ("team", "month", 10)
    assert subscriptions.get(customer__name="Globex Corp").interval == "year"
    people = set(Membership.objects.filter(customer__name="Acme Inc").values_list("user__email", "role"))
    assert people == {
        ("owner@acme.test", Role.OWNER),
        ("ap@acme.test", Role.BILLING_ADMIN),
        ("dev@acme.test", Role.MEMBER),
    }
    assert SeatAssignment.objects.filter(subscription=acme).count() == 3


def test_seed_demo_gives_each_customer_invoice_history(demo):
    today = clock.today()
    issued = Invoice.objects.filter(issued_at__isnull=False, kind=InvoiceKind.REGULAR)
    for name in ("Acme Inc", "Initech GmbH", "Umbrella LLC"):  # monthly: the last three months and this one
        assert issued.filter(customer__name=name).count() >= 4, name
        assert issued.filter(customer__name=name, status=InvoiceStatus.PAID).count() >= 2, name
    assert issued.filter(customer__name="Globex Corp").exists()  # annual: one invoice for the year
    # Acme in California pays sales tax; Initech (EUR, valid German VAT ID) is reverse charged.
    assert all(i.tax_minor > 0 for i in issued.filter(customer__name="Acme Inc"))
    initech = issued.filter(customer__name="Initech GmbH")
    assert {i.currency for i in initech} == {"EUR"} and all(i.tax_minor == 0 for i in initech)
    # Umbrella has an unpaid invoice past its due date.
    assert issued.filter(customer__name="Umbrella LLC", status=InvoiceStatus.OPEN, due_on__lt=today).count() == 1
    # Globex's exemption certificate waits for review.
    exemption = TaxExemption.objects.get(customer__name="Globex Corp")
    assert exemption.status == ExemptionStatus.SUBMITTED


def test_seed_demo_twice_changes_nothing(demo):
    before = _snapshot()
    call_command("seed_demo", verbosity=0)
    assert _snapshot() == before
    assert User.objects.filter(email="owner@acme.test").count() == 1
    assert Customer.objects.filter(name__in=DEMO_CUSTOMERS).count() == 4


def test_seed_demo_acme_can_change_seats_right_away_through_the_service(demo):
    acme = Subscription.objects.get(customer__name="Acme Inc")
    owner = User.objects.get(email="owner@acme.test")
    invoices_before = Invoice.objects.filter(customer=acme.customer).count()

    # when
    preview = change_preview(subscription_id=acme.pk, kind="seats", seats=12)
    billed = change_apply(
        subscription_id=acme.pk,
        kind="seats",
        seats=12,
        expected_version=preview.version,
        expected_amount_due_minor=preview.preview.amount_due_now_minor,
        idempotency_key="demo-seats-12",
        actor=owner,
    )

    # then: prorated for the rest of this month, invoiced now (Acme's billing mode) with California tax
    acme.refresh_from_db()
    assert acme.seats == 12
    # 2 seats × 15.00 × (days left, today included) / (days in the period): the whole 30.00 on the period's first day.
    left = (acme.current_period_end.date() - clock.today()).days
    days = (acme.current_period_end.date() - acme.current_period_start.date()).days
    expected = (Decimal(2 * 1_500) * left / days).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert 0 < preview.preview.amount_due_now_minor == int(expected) <= 2 * 1_500
    assert preview.tax_minor > 0
    assert billed.change.kind == "seats"
    assert Invoice.objects.filter(customer=acme.customer).count() == invoices_before + 1


def _hidden(html: str, name: str) -> str:
    return re.search(rf'name="{name}" value="([^"]*)"', html).group(1)


def test_seed_demo_acme_owner_can_change_seats_right_away_in_the_portal(demo):
    client = Client()
    assert client.login(username="owner@acme.test", password="continuum-demo")
    acme = Subscription.objects.get(customer__name="Acme Inc")
    customer_id = acme.customer_id

    preview = client.post(
        reverse("portal:change_preview_seats", args=[customer_id]),
        {"subscription_id": acme.pk, "seats": "12"},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200, preview.text
    assert "being renewed" not in preview.text
    assert "$304.00" in preview.text  # new monthly amount: 199.00 + 7 seats above the 5 included × 15.00

    fields = {name: _hidden(preview.text, name) for name in ("version", "amount_due_now_minor", "idempotency_key")}
    applied = client.post(
        reverse("portal:change_apply_seats", args=[customer_id]),
        {"subscription_id": acme.pk, "seats": "12", **fields},
    )
    assert applied.status_code == 302
    assert applied["Location"].startswith(reverse("portal:survey", args=[customer_id]))
    acme.refresh_from_db()
    assert acme.seats == 12
    dashboard = client.get(reverse("portal:customer_dashboard", args=[customer_id]))
    assert "of 12 in use" in dashboard.text


def _months_later(anchor, months):
    """`anchor` moved `months` calendar months on, on the anchor's day or the month's last day (the anchor rule)."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def test_seed_demo_again_weeks_later_brings_everything_up_to_that_day(db, time_machine):
    # `make run` on a database seeded weeks earlier, holding a customer who signed up mid-month back then: re-seeding
    # must renew every subscription into the period containing the new today, not only up to the 1st of the month.
    from subscriptions.models import Package
    from subscriptions.services.subscriptions import subscription_create
    from tests.factories import CustomerFactory

    later = clock.now()
    earlier = later - timedelta(days=69)
    time_machine.move_to(earlier, tick=True)
    call_command("seed_demo", verbosity=0)
    hooli = subscription_create(
        customer=CustomerFactory(name="Hooli", country="US", currency="USD"),
        package=Package.objects.get(slug="starter"),
        interval="month",
        seats=3,
        start=earlier,
    )

    time_machine.move_to(later, tick=True)
    call_command("seed_demo", verbosity=0)

    assert Subscription.objects.count() == 5
    now = timezone.now()
    for subscription in Subscription.objects.all():
        assert subscription.current_period_start <= now < subscription.current_period_end
    hooli.refresh_from_db()
    expected = next(_months_later(earlier, n) for n in range(1, 5) if _months_later(earlier, n + 1) > now)
    assert hooli.current_period_start == expected
    _assert_numbered_in_the_series_of_their_issue_date()


def _assert_numbered_in_the_series_of_their_issue_date():
    by_series: dict[str, list[int]] = {}
    for number, series, issued_at in Invoice.objects.filter(issued_at__isnull=False).values_list(
        "number", "series", "issued_at"
    ):
        assert series == f"INV-{issued_at.year}" and number.startswith(f"{series}-"), (number, issued_at)
        by_series.setdefault(series, []).append(int(number.rsplit("-", 1)[1]))
    for series, values in by_series.items():
        assert sorted(values) == list(range(1, len(values) + 1)), series  # gapless


def test_seed_demo_invoices_are_numbered_in_the_series_of_their_own_issue_date(demo):
    # Seeded in January–March, the history reaches back into the previous year: those invoices are INV-<that year>.
    _assert_numbered_in_the_series_of_their_issue_date()
    for invoice in Invoice.objects.filter(issued_at__isnull=False).exclude(pdf_file=""):
        assert invoice.pdf_file.name.endswith(f"{invoice.number}.pdf")


def test_seed_demo_globex_certificate_is_valid_for_more_than_a_year(demo):
    exemption = TaxExemption.objects.get(customer__name="Globex Corp")
    assert exemption.expires_on > clock.today() + timedelta(days=365)


def test_seed_demo_history_is_dated_when_it_happened_and_in_each_customers_money(demo):
    from subscriptions.models import AuditEvent

    seeded = timezone.now() - timezone.timedelta(minutes=5)
    for invoice in Invoice.objects.filter(customer__name__in=DEMO_CUSTOMERS, status=InvoiceStatus.PAID):
        # the payments of earlier months happened when they were paid, not when the demo was loaded
        [payment] = AuditEvent.objects.filter(action="invoice.payment_recorded", object_id=str(invoice.pk))
        assert payment.occurred_at == invoice.paid_at < seeded
        assert "USD" not in payment.summary and "EUR" not in payment.summary
    for subscription in Subscription.objects.filter(customer__name__in=DEMO_CUSTOMERS):
        created = AuditEvent.objects.get(action="subscription.created", object_id=str(subscription.pk))
        assert created.occurred_at < seeded  # subscribed when the customer's history starts
        # each renewal happened when the replayed billing run reached that period (an hour in), not at seed time
        for renewal in AuditEvent.objects.filter(action="subscription.renewed", object_id=str(subscription.pk)):
            start = parse_datetime(renewal.after["periods"][-1][0])
            assert start <= renewal.occurred_at <= start + timezone.timedelta(hours=1) or renewal.occurred_at > seeded
    # what the owners see: dated history, amounts as their country writes them
    for email, name, payment in (
        ("owner@acme.test", "Acme Inc", r"Payment of \$\d{1,3}(,\d{3})*\.\d\d on INV-"),
        ("owner@initech.test", "Initech GmbH", r"Payment of \d{1,3}(\.\d{3})*,\d\d\u00a0€ on INV-"),
    ):
        client = Client()
        assert client.login(username=email, password="continuum-demo")
        customer = Customer.objects.get(name=name)
        log = client.get(reverse("portal:activity", args=[customer.pk])).text
        assert re.search(payment, log), name
        assert "USD" not in log and "EUR" not in log
