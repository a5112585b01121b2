"""Support changes seats/package and extends trials on the customer's behalf: preview, reason, audit, permissions."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from subscriptions.models import AuditEvent, Subscription, SubscriptionStatus
from subscriptions.services.subscriptions import subscription_create
from tests.admin.helpers import customer_with_subscription, live_subscription
from tests.factories import CustomerFactory, priced_package

pytestmark = pytest.mark.django_db


def _current(seats: int = 5) -> Subscription:
    # A period that contains today, so the change is prorated and immediate.
    customer = CustomerFactory()
    package = priced_package(slug="team")
    return subscription_create(
        customer=customer,
        package=package,
        interval="month",
        seats=seats,
        start=timezone.now() - timedelta(days=3),
    )


def _seats_url(subscription) -> str:
    return reverse("admin:subscriptions_subscription_change_seats", args=[subscription.pk])


def test_support_changes_seats_after_a_preview_with_a_reason(support_client, support_user):
    subscription = _current(seats=5)
    url = _seats_url(subscription)

    preview = support_client.post(url, {"seats": 8, "reason": "Customer phoned: three new hires", "_preview": "1"})

    assert preview.status_code == 200
    shown = preview.context["preview"]
    assert shown.amount_due_now_minor > 0
    assert "Confirm for the customer" in preview.text
    subscription.refresh_from_db()
    assert subscription.seats == 5  # a preview writes nothing

    confirm = support_client.post(
        url,
        {
            "seats": 8,
            "reason": "Customer phoned: three new hires",
            "expected_version": shown.version,
            "expected_amount_due_minor": shown.amount_due_now_minor,
            "idempotency_key": "staff-key-1",
            "_apply": "1",
        },
    )

    assert confirm.status_code == 302
    subscription.refresh_from_db()
    assert subscription.seats == 8
    event = AuditEvent.objects.filter(customer=subscription.customer, reason="Customer phoned: three new hires").get()
    assert event.actor == support_user
    assert event.actor_kind == "staff"
    assert event.reason == "Customer phoned: three new hires"
    assert subscription.changes.get().amount_due_now_minor == shown.amount_due_now_minor


# Issue 15, hole 3: staff seat and package changes called the unbilled subscriptions services, so the proration
# waited for the billing run's safety net. Now they are the customer's billed change: invoiced at once, with tax.
def test_staff_seat_change_is_billed_at_once_like_the_customers_own(support_client):
    from billing.models import Invoice, InvoiceKind

    subscription = _current(seats=5)
    url = _seats_url(subscription)
    preview = support_client.post(url, {"seats": 8, "reason": "Three new hires", "_preview": "1"})
    billed = preview.context["billed"]
    assert billed.billing_mode == "invoice_now" and billed.total_minor >= billed.subtotal_minor > 0
    assert "We will invoice" in preview.text

    support_client.post(
        url,
        {
            "seats": 8,
            "reason": "Three new hires",
            "expected_version": billed.version,
            "expected_amount_due_minor": billed.preview.amount_due_now_minor,
            "idempotency_key": "staff-billed-1",
            "_apply": "1",
        },
    )

    change = subscription.changes.get()
    invoice = Invoice.objects.get(subscription_change=change)
    assert invoice.kind == InvoiceKind.PRORATION
    assert invoice.total_minor == billed.total_minor


def test_staff_package_change_is_billed_at_once(support_client):
    from billing.models import Invoice

    subscription = _current(seats=5)
    business = priced_package(slug="business", name="Business")
    business.change_sources.add(subscription.package)
    url = reverse("admin:subscriptions_subscription_change_package", args=[subscription.pk])
    # Monthly → annual: an upgrade, applied now, the annual price less the unused month charged at once.
    data = {"package": "business", "interval": "year", "seats": "", "reason": "Upgrade by phone"}
    billed = support_client.post(url, {**data, "_preview": "1"}).context["billed"]
    assert billed.total_minor > 0
    support_client.post(
        url,
        {
            **data,
            "expected_version": billed.version,
            "expected_amount_due_minor": billed.preview.amount_due_now_minor,
            "idempotency_key": "staff-billed-2",
            "_apply": "1",
        },
    )
    assert Invoice.objects.get(subscription_change=subscription.changes.get()).total_minor == billed.total_minor


def test_staff_change_without_a_reason_is_refused(support_client):
    subscription = _current(seats=5)

    response = support_client.post(_seats_url(subscription), {"seats": 8, "reason": "  ", "_preview": "1"})

    assert response.status_code == 200
    assert response.context["preview"] is None
    assert response.context["form"].errors["reason"]
    subscription.refresh_from_db()
    assert subscription.seats == 5


def test_staff_change_shows_the_service_error_for_bad_seats(support_client):
    subscription = _current(seats=5)

    response = support_client.post(_seats_url(subscription), {"seats": 100_000, "reason": "asked", "_preview": "1"})

    assert response.context["preview"] is None
    assert response.context["form"].non_field_errors()
    subscription.refresh_from_db()
    assert subscription.seats == 5


def test_staff_change_with_a_stale_preview_is_refused(support_client):
    subscription = _current(seats=5)

    response = support_client.post(
        _seats_url(subscription),
        {
            "seats": 8,
            "reason": "asked",
            "expected_version": subscription.version + 5,
            "expected_amount_due_minor": 0,
            "idempotency_key": "k",
            "_apply": "1",
        },
        follow=True,
    )

    assert "changed since your preview" in response.text
    subscription.refresh_from_db()
    assert subscription.seats == 5


def test_staff_confirm_without_the_preview_token_is_forbidden(support_client):
    subscription = _current(seats=5)

    response = support_client.post(_seats_url(subscription), {"seats": 8, "reason": "asked", "_apply": "1"})

    assert response.status_code == 403
    subscription.refresh_from_db()
    assert subscription.seats == 5


def test_billing_staff_cannot_change_subscriptions_and_see_no_button(billing_client):
    subscription = _current(seats=5)

    page = billing_client.get(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))
    get = billing_client.get(_seats_url(subscription))
    post = billing_client.post(
        _seats_url(subscription),
        {
            "seats": 8,
            "reason": "x",
            "expected_version": 1,
            "expected_amount_due_minor": 0,
            "idempotency_key": "k",
            "_apply": "1",
        },
    )

    assert page.status_code == 200
    assert "Change seats" not in page.text
    assert (get.status_code, post.status_code) == (403, 403)
    subscription.refresh_from_db()
    assert subscription.seats == 5


def test_support_sees_the_action_buttons_on_the_customer_page(support_client):
    subscription = _current(seats=5)

    page = support_client.get(reverse("admin:subscriptions_customer_change", args=[subscription.customer_id]))

    assert _seats_url(subscription) in page.text


def test_support_changes_package_with_a_preview(support_client):
    subscription = _current(seats=5)
    business = priced_package(slug="business", name="Business")
    business.change_sources.add(subscription.package)
    url = reverse("admin:subscriptions_subscription_change_package", args=[subscription.pk])

    preview = support_client.post(
        url, {"package": "business", "interval": "month", "seats": "", "reason": "Upgrade agreed", "_preview": "1"}
    )

    assert preview.status_code == 200, preview.context["form"].errors
    shown = preview.context["preview"]
    confirm = support_client.post(
        url,
        {
            "package": "business",
            "interval": "month",
            "seats": "",
            "reason": "Upgrade agreed",
            "expected_version": shown.version,
            "expected_amount_due_minor": shown.amount_due_now_minor,
            "idempotency_key": "pkg-1",
            "_apply": "1",
        },
    )
    assert confirm.status_code == 302
    subscription.refresh_from_db()
    if shown.immediate:
        assert subscription.package.slug == "business"
    else:
        assert subscription.scheduled_changes.filter(kind="package", applied_at__isnull=True).exists()
    assert AuditEvent.objects.filter(customer=subscription.customer, reason="Upgrade agreed").exists()


def _trialing() -> Subscription:
    customer = CustomerFactory()
    package = priced_package(slug="team", trial_days=14)
    return subscription_create(
        customer=customer, package=package, interval="month", seats=3, trial=True, start=timezone.now()
    )


def test_support_extends_a_trial_with_a_reason(support_client, support_user):
    subscription = _trialing()
    old_end = subscription.trial_end

    response = support_client.post(
        reverse("admin:subscriptions_subscription_extend_trial", args=[subscription.pk]),
        {"days": 7, "reason": "Evaluation delayed by their IT", "_apply": "1"},
    )

    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.trial_end == old_end + timedelta(days=7)
    assert subscription.current_period_end == subscription.trial_end
    event = AuditEvent.objects.get(customer=subscription.customer, action="subscription.trial_extended")
    assert (event.actor, event.reason) == (support_user, "Evaluation delayed by their IT")


def test_extending_a_paid_subscription_is_refused(support_client):
    subscription = live_subscription(customer_with_subscription())
    assert subscription.status == SubscriptionStatus.ACTIVE

    response = support_client.post(
        reverse("admin:subscriptions_subscription_extend_trial", args=[subscription.pk]),
        {"days": 7, "reason": "please", "_apply": "1"},
    )

    assert response.status_code == 200
    assert "Only a trial can be extended" in response.text


def test_billing_staff_cannot_extend_a_trial(billing_client):
    subscription = _trialing()
    old_end = subscription.trial_end

    response = billing_client.post(
        reverse("admin:subscriptions_subscription_extend_trial", args=[subscription.pk]),
        {"days": 7, "reason": "please", "_apply": "1"},
    )

    assert response.status_code == 403
    subscription.refresh_from_db()
    assert subscription.trial_end == old_end
