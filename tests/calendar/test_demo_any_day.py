"""`seed_demo` on whatever day the clock says gives everything the README's demo table promises (one seed per run:
`make test-calendar` runs this on each pinned date; tests/portal/test_demo_seed.py has the detailed checks)."""

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from billing.models import ExemptionStatus, Invoice, InvoiceKind, InvoiceStatus, TaxExemption
from billing.services.changes import change_apply, change_preview
from subscriptions import clock
from subscriptions.models import Subscription, SubscriptionStatus, User

pytestmark = pytest.mark.django_db


def test_seed_demo_on_this_day_keeps_every_promise_of_the_readme():
    call_command("seed_demo", verbosity=0)
    now, today = clock.now(), clock.today()
    subscriptions = {s.customer.name: s for s in Subscription.objects.select_related("customer", "package")}
    issued = Invoice.objects.filter(issued_at__isnull=False)

    # every demo subscription is live, in the period that contains now
    assert set(subscriptions) == {"Acme Inc", "Globex Corp", "Initech GmbH", "Umbrella LLC"}
    for name, subscription in subscriptions.items():
        assert subscription.status == SubscriptionStatus.ACTIVE, name
        assert subscription.current_period_start <= now < subscription.current_period_end, name
    # Acme: Team, 10 seats, monthly, Californian tax
    acme = subscriptions["Acme Inc"]
    assert (acme.package.slug, acme.seats, acme.interval) == ("team", 10, "month")
    assert all(i.tax_minor > 0 for i in issued.filter(customer=acme.customer, kind=InvoiceKind.REGULAR))
    # Globex: Business, annual, an exemption awaiting review whose certificate has not lapsed
    globex = subscriptions["Globex Corp"]
    assert (globex.package.slug, globex.interval) == ("business", "year")
    exemption = TaxExemption.objects.get(customer=globex.customer)
    assert exemption.status == ExemptionStatus.SUBMITTED and exemption.expires_on > today
    # Initech: EUR, reverse charge
    initech = issued.filter(customer=subscriptions["Initech GmbH"].customer)
    assert initech.exists() and {i.currency for i in initech} == {"EUR"} and all(i.tax_minor == 0 for i in initech)
    # Umbrella: exactly one invoice past its due date and unpaid — on the 1st of a month too — shown to its owner
    umbrella = subscriptions["Umbrella LLC"].customer
    [overdue] = issued.filter(customer=umbrella, status=InvoiceStatus.OPEN, due_on__lt=today)
    client = Client()
    assert client.login(username="owner@umbrella.test", password="continuum-demo")
    page = client.get(reverse("portal:customer_dashboard", args=[umbrella.pk])).text
    assert 'data-testid="overdue-invoice"' in page and overdue.number in page
    # invoice numbers are in the series of their own issue date, gapless
    by_series: dict[str, list[int]] = {}
    for invoice in issued:
        assert invoice.series == f"INV-{invoice.issued_at.year}", (invoice.number, invoice.issued_at)
        by_series.setdefault(invoice.series, []).append(int(invoice.number.rsplit("-", 1)[1]))
    assert all(sorted(v) == list(range(1, len(v) + 1)) for v in by_series.values()), by_series

    # and Acme's owner can change seats at once
    owner = User.objects.get(email="owner@acme.test")
    preview = change_preview(subscription_id=acme.pk, kind="seats", seats=12)
    change_apply(
        subscription_id=acme.pk,
        kind="seats",
        seats=12,
        expected_version=preview.version,
        expected_amount_due_minor=preview.preview.amount_due_now_minor,
        idempotency_key="calendar-demo-12",
        actor=owner,
    )
    acme.refresh_from_db()
    assert acme.seats == 12 and preview.preview.amount_due_now_minor > 0
