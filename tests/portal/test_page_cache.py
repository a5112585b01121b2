"""Customer pages cached under the customer's data version (portal/page_cache.py, issue 18): never stale.

The version is kept by database triggers (subscriptions/triggers.py), so a write through any path — a service, the
set-based billing run, a queryset `update()`, a provisioning task — shows on the very next request, and a second
request of an unchanged page runs fewer queries than the first. Another user's, another role's and another
customer's cached data never show, and the cache never widens access (the membership check runs first, uncached).
"""

import importlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from billing.models import BillingProfile, Invoice, InvoiceLine, InvoiceStatus, TaxRate
from billing.services.billing_run import billing_run
from billing.services.exemptions import tax_exemption_submit
from subscriptions.data_versions import customer_data_version
from subscriptions.models import (
    GLOBAL_CUSTOMER_ID,
    CustomerDataChange,
    Entitlement,
    Membership,
    Price,
    Role,
    SeatAssignment,
    Subscription,
    User,
)
from subscriptions.services.audit import audit_record
from subscriptions.services.changes import subscription_change_seats_apply
from subscriptions.services.data_changes import customer_data_changes_prune
from subscriptions.services.members import invitation_create, membership_change_role
from subscriptions.services.seats import seat_assign
from subscriptions.tasks import customer_data_changes_prune_task, entitlements_reconcile_task
from tests.factories import BillingProfileFactory, MembershipFactory, TaxRateFactory, priced_package
from tests.portal.conftest import make_account, make_invoice

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)  # pinned: every date below is relative to it


@pytest.fixture(autouse=True)
def page_cache(settings):
    settings.PAGE_CACHE = True


@pytest.fixture
def account(db, time_machine):
    time_machine.move_to(NOW, tick=False)
    return make_account()


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text))


def _get(client, name, account, *args, **params):
    return client.get(reverse(f"portal:{name}", args=[account.customer.pk, *args]), params)


def _counted(client, name, account, *args, **params) -> tuple[str, int]:
    with CaptureQueriesContext(connection) as queries:
        text = _text(_get(client, name, account, *args, **params))
    return text, len(queries)


# --- the version itself ---------------------------------------------------------------------------------------------


def _watched() -> set[str]:
    tables = set()
    for module in (
        "subscriptions.migrations.0012_customer_data_changes",
        "billing.migrations.0013_customer_data_change_triggers",
    ):
        tables |= set(importlib.import_module(module).WATCHED)
    return tables


# Tables with a customer that no cached customer page reads (staff-only, internal queues, other pages).
NOT_WATCHED = {
    "subscriptions_healthrecomputemark",  # the health debounce marker: internal
    "subscriptions_staffnote",  # staff only
    "subscriptions_usagerecord",  # the usage API; no cached page shows it
    "subscriptions_event",  # webhook outbox
    "subscriptions_webhookendpoint",  # the webhooks page is not cached
    "subscriptions_webhookdelivery",
    "subscriptions_webhookattempt",
    "billing_customerhealthsnapshot",  # staff only (customers never see their health)
    "billing_journeystagechange",
    "billing_revenuecustomermonth",  # staff metrics
    "portal_apikey",  # the API keys page is not cached
    "portal_effortsurveyresponse",  # read per request (the dashboard's survey prompt), never cached
    "portal_accesstoken",
}


def test_every_table_of_a_customer_is_watched_or_named_as_not_read_by_a_cached_page():
    watched = _watched()
    customer_tables = set()
    for model in apps.get_models():
        relations = {f.related_model._meta.db_table for f in model._meta.concrete_fields if f.is_relation}
        if relations & {"subscriptions_customer", "subscriptions_subscription", "billing_invoice"}:
            customer_tables.add(model._meta.db_table)
    assert customer_tables - watched - NOT_WATCHED == set()
    assert watched & NOT_WATCHED == set()


def test_the_triggers_exist_for_every_watched_table():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'cdc_%'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'cdc_%'")
        names = {row[0] for row in cursor.fetchall()}
    assert names == {f"cdc_{table}_{event}" for table in _watched() for event in ("ins", "upd", "del")}


def test_a_write_moves_its_own_customers_version_only(account, other_account):
    mine, theirs = (customer_data_version(customer_id=a.customer.pk) for a in (account, other_account))
    # An indirect table (seat assignment → subscription → customer), written with a queryset update().
    SeatAssignment.objects.filter(subscription=account.subscription, user=account.member).update(
        user=account.billing_admin
    )
    assert customer_data_version(customer_id=account.customer.pk) != mine
    assert customer_data_version(customer_id=other_account.customer.pk) == theirs
    # A catalog write (the global row) moves every customer's version.
    Price.objects.filter(package=account.subscription.package).update(flat_amount_minor=12_345)
    assert customer_data_version(customer_id=other_account.customer.pk) != theirs


def test_a_user_edit_moves_the_version_of_every_customer_the_user_is_a_member_of(account, other_account):
    MembershipFactory(customer=other_account.customer, user=account.member, role=Role.MEMBER)
    before = [customer_data_version(customer_id=a.customer.pk) for a in (account, other_account)]
    User.objects.filter(pk=account.member.pk).update(name="Renamed Member")
    after = [customer_data_version(customer_id=a.customer.pk) for a in (account, other_account)]
    assert before[0] != after[0] and before[1] != after[1]


def test_the_prune_keeps_one_fresh_row_per_customer_and_never_returns_an_earlier_version(account, other_account):
    seen = {customer_data_version(customer_id=account.customer.pk)}
    for n in range(3):
        audit_record(customer=account.customer, action="test.event", summary=f"Event {n}")
        seen.add(customer_data_version(customer_id=account.customer.pk))
    result = customer_data_changes_prune_task.apply().get()
    assert result["customers"] >= 2
    for customer_id in (account.customer.pk, other_account.customer.pk, GLOBAL_CUSTOMER_ID):
        assert CustomerDataChange.objects.filter(customer_id=customer_id).count() == 1
    assert customer_data_version(customer_id=account.customer.pk) not in seen
    assert customer_data_changes_prune()["customers"] == 0  # nothing left to prune


# --- each page shows every write on the next request, and a warm request is cheaper -----------------------------


def test_dashboard_warm_is_cheaper_and_a_seat_change_through_the_service_shows_next(account, client_for):
    client = client_for(account.owner)
    _get(client, "customer_dashboard", account)  # the first visit stores the chosen customer in the session
    CustomerDataChange.objects.create(customer_id=account.customer.pk)  # so the next visit is a miss
    cold_text, cold = _counted(client, "customer_dashboard", account)
    warm_text, warm = _counted(client, "customer_dashboard", account)
    assert warm_text == cold_text and "Seats: 2 of 10 in use" in warm_text
    assert warm <= 4 < cold  # session, user, membership, version
    subscription_change_seats_apply(
        subscription_id=account.subscription.pk, seats=12, expected_version=account.subscription.version, actor=None
    )
    assert "Seats: 2 of 12 in use" in _text(_get(client, "customer_dashboard", account))


def test_dashboard_after_the_set_based_billing_run_shows_the_renewed_period(account, client_for):
    client = client_for(account.owner)
    BillingProfileFactory(customer=account.customer)
    end = account.subscription.current_period_end
    billing_run(as_of=NOW)  # the current period's invoice
    before = _text(_get(client, "customer_dashboard", account))
    billing_run(as_of=end + timedelta(hours=1))  # renews with bulk_update(), drafts and issues set-based
    renewed = Subscription.objects.get(pk=account.subscription.pk)
    assert renewed.current_period_start == end
    after = _text(_get(client, "customer_dashboard", account))
    assert after != before
    invoices = _text(_get(client, "invoices", account))
    for invoice in Invoice.objects.filter(customer=account.customer, issued_at__isnull=False):
        assert invoice.number in invoices


def test_the_enablement_panel_shows_what_a_provisioning_task_wrote(account, client_for):
    client = client_for(account.owner)
    first = _text(_get(client, "enablement", account))
    assert _text(_get(client, "enablement", account)) == first  # warm
    entitlements_reconcile_task.apply(args=[account.customer.pk])  # the provisioning task, as a worker runs it
    assert Entitlement.objects.filter(customer=account.customer).exists()
    reconciled = _text(_get(client, "enablement", account))
    assert reconciled != first
    # A failure written set-based (no save, no signal).
    Entitlement.objects.filter(customer=account.customer).update(state="failed", error="Receiver down")
    assert _text(_get(client, "enablement", account)) != reconciled


def test_package_page_shows_a_catalog_price_changed_by_a_queryset_update(account, client_for):
    client = client_for(account.owner)
    text, cold = _counted(client, "package", account)
    _, warm = _counted(client, "package", account)
    assert warm < cold
    assert _text(_get(client, "package", account)) == text
    Price.objects.filter(package=account.subscription.package, currency="USD").update(flat_amount_minor=77_700)
    after = _text(_get(client, "package", account))
    assert after != text and "$827.00" in after  # 777.00 + 5 seats above the 5 included × 10.00


def test_seats_page_shows_an_assignment_a_renamed_user_and_drops_an_expired_invitation(
    account, client_for, time_machine
):
    client = client_for(account.owner)
    first, cold = _counted(client, "seats", account)
    _, warm = _counted(client, "seats", account)
    assert warm < cold and "Acme Inc Billing" in first
    seat_assign(subscription_id=account.subscription.pk, user_id=account.billing_admin.pk, actor=account.owner)
    assert _text(_get(client, "seats", account)).count("Has a seat") == first.count("Has a seat") + 1
    User.objects.filter(pk=account.billing_admin.pk).update(name="Beatrice Billing")
    assert "Beatrice Billing" in _text(_get(client, "seats", account))
    invitation = invitation_create(customer=account.customer, email="new@example.com", invited_by=account.owner)
    assert "new@example.com" in _text(_get(client, "seats", account))
    time_machine.move_to(invitation.expires_at + timedelta(minutes=1), tick=False)  # same data, later clock
    assert "new@example.com" not in _text(_get(client, "seats", account))


def test_invoices_list_and_detail_show_a_new_invoice_a_status_update_and_a_line_edit(account, client_for):
    client = client_for(account.owner)
    invoice = make_invoice(account.customer)
    listed, cold = _counted(client, "invoices", account)
    _, warm = _counted(client, "invoices", account)
    assert invoice.number in listed and warm < cold
    second = make_invoice(account.customer)
    assert second.number in _text(_get(client, "invoices", account))
    Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.PAID)
    assert "Paid" in _text(_get(client, "invoices", account, status=InvoiceStatus.PAID))
    detail, cold = _counted(client, "invoice_detail", account, invoice.pk)
    _, warm = _counted(client, "invoice_detail", account, invoice.pk)
    assert warm < cold
    InvoiceLine.objects.filter(invoice=invoice).update(description="Renamed line for the test")  # via the invoice
    assert "Renamed line for the test" in _text(_get(client, "invoice_detail", account, invoice.pk))


def test_tax_page_shows_a_submitted_exemption_next(account, client_for):
    client = client_for(account.owner)
    _, cold = _counted(client, "tax", account)
    _, warm = _counted(client, "tax", account)
    assert warm < cold
    tax_exemption_submit(
        customer=account.customer,
        jurisdictions="US-CA",
        exemption_type="resale",
        certificate_number="CERT-CACHE-1",
        expires_on=NOW.date() + timedelta(days=300),
        certificate=ContentFile(b"%PDF-1.4 cert", name="cert.pdf"),
        actor=account.owner,
    )
    assert "CERT-CACHE-1" in _text(_get(client, "tax", account))


def test_activity_shows_a_new_event_next(account, client_for):
    client = client_for(account.owner)
    _, cold = _counted(client, "activity", account)
    _, warm = _counted(client, "activity", account)
    assert warm < cold
    audit_record(customer=account.customer, action="test.event", summary="Something the test did")
    assert "Something the test did" in _text(_get(client, "activity", account))


def test_seat_preview_takes_its_inputs_from_the_cache_and_prices_each_seat_count(account, client_for):
    client = client_for(account.owner)
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    url = reverse("portal:change_preview_seats", args=[account.customer.pk])

    def preview(seats) -> tuple[str, int]:
        with CaptureQueriesContext(connection) as queries:
            response = client.post(
                url, {"subscription_id": account.subscription.pk, "seats": str(seats)}, headers={"HX-Request": "true"}
            )
        return _text(response), len(queries)

    twelve, cold = preview(12)
    thirteen, warm = preview(13)
    assert warm < cold
    assert "$170.00" in twelve and "$180.00" in thirteen  # 100.00 + (seats − 5) × 10.00, computed per request
    TaxRate.objects.update(rate="0.1000")  # a rate edit by a queryset update: the global row
    assert (
        _text(
            client.post(
                url, {"subscription_id": account.subscription.pk, "seats": "13"}, headers={"HX-Request": "true"}
            )
        )
        != thirteen
    )
    subscription_change_seats_apply(
        subscription_id=account.subscription.pk, seats=15, expected_version=account.subscription.version, actor=None
    )
    assert "15" in preview(13)[0]  # the current seat count after the change


# --- never another user's, role's or customer's data; never wider access -----------------------------------------


def test_each_user_sees_their_own_seat_and_their_roles_content(account, client_for):
    BillingProfileFactory(customer=account.customer)
    owner, member = client_for(account.owner), client_for(account.member)
    billing = client_for(account.billing_admin)
    for _ in range(2):  # cold, then warm
        owner_text = _text(_get(owner, "customer_dashboard", account))
        member_text = _text(_get(member, "customer_dashboard", account))
        billing_seats = _text(_get(billing, "seats", account))
    assert "Estimated total" in owner_text and "Estimated total" not in member_text
    assert "You hold a seat" in _text(_get(member, "seats", account))
    assert "You do not hold a seat" in billing_seats  # the owner's warm seats page is not the billing admin's


def test_a_role_change_shows_the_new_roles_page_and_a_removed_member_gets_404(account, client_for):
    member = client_for(account.member)
    assert "Estimated total" not in _text(_get(member, "customer_dashboard", account))
    assert _get(member, "invoices", account).status_code == 403
    membership = Membership.objects.get(customer=account.customer, user=account.member)
    membership_change_role(membership_id=membership.pk, role=Role.OWNER, actor=account.owner)
    BillingProfileFactory(customer=account.customer)
    assert "Estimated total" in _text(_get(member, "customer_dashboard", account))
    assert _get(member, "invoices", account).status_code == 200
    # Removed by a raw delete (no service, no signal): the warm cache must not let them in.
    Membership.objects.filter(pk=membership.pk).delete()
    assert _get(member, "customer_dashboard", account).status_code == 404
    assert _get(member, "invoices", account).status_code == 404


def test_a_user_in_two_customers_sees_each_customers_own_data(account, client_for):
    other = make_account("Globex Corp", seats=5, package=priced_package(slug="solo", name="Solo"))
    MembershipFactory(customer=other.customer, user=account.owner, role=Role.OWNER)
    client = client_for(account.owner)
    for _ in range(2):
        acme = _text(_get(client, "customer_dashboard", account))
        globex = _text(_get(client, "customer_dashboard", other))
    assert "Team" in acme and "Seats: 2 of 10 in use" in acme
    assert "Solo" in globex and "Seats: 2 of 5 in use" in globex
    # Another customer's invoice stays a 404 however warm the cache is.
    theirs = make_invoice(other.customer)
    _get(client, "invoice_detail", other, theirs.pk)
    assert _get(client, "invoice_detail", account, theirs.pk).status_code == 404


def test_with_the_setting_off_a_page_reads_no_version(account, client_for, settings):
    settings.PAGE_CACHE = False
    client = client_for(account.owner)
    with CaptureQueriesContext(connection) as queries:
        _get(client, "customer_dashboard", account)
    assert not any("customerdatachange" in q["sql"] for q in queries.captured_queries)


def test_a_billing_profile_move_changes_the_dashboard_estimate(account, client_for):
    BillingProfileFactory(customer=account.customer)
    TaxRateFactory()
    client = client_for(account.owner)
    before = _text(_get(client, "customer_dashboard", account))
    BillingProfile.objects.filter(customer=account.customer).update(region="OR", postal_code="97201")
    assert _text(_get(client, "customer_dashboard", account)) != before


# --- the rendered content kept beside the data ({% page_fragment %}) ------------------------------------------------


def _token(response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text).group(1)


def test_a_second_request_of_an_unchanged_page_reuses_its_rendered_content(account, client_for):
    client = client_for(account.owner)
    first = _get(client, "activity", account)
    second = _get(client, "activity", account)
    assert "portal/_pager.html" in [t.name for t in first.templates]  # rendered inside the content
    assert "portal/_pager.html" not in [t.name for t in second.templates]  # kept, not rendered again
    assert _text(second) == _text(first)
    audit_record(customer=account.customer, action="test.event", summary="Written after the page was kept")
    third = _get(client, "activity", account)
    assert "Written after the page was kept" in _text(third)


def test_a_kept_page_carries_each_browsers_own_csrf_token_and_a_post_shows_its_own_errors(account):
    # given the same user signed in from two browsers, both opening the tax exemption page (the second is kept)
    browsers = [Client(enforce_csrf_checks=True) for _ in range(2)]
    for browser in browsers:
        browser.force_login(account.owner)  # a sign-in writes the user's last login: signed in first
    pages = [_get(browser, "tax", account) for browser in browsers]
    assert "portal/_exemption_fields.html" not in [t.name for t in pages[1].templates]
    first, second = (_token(page) for page in pages)
    assert "csrf-token-of-this-request" not in pages[1].text
    url = reverse("portal:tax", args=[account.customer.pk])
    incomplete = {"jurisdictions": "US-CA", "exemption_type": "resale", "certificate_number": ""}
    # when the second browser sends the form with the token of the first browser's page: refused
    assert browsers[1].post(url, {**incomplete, "csrfmiddlewaretoken": first}).status_code == 403
    # then with its own page's token the form is accepted, and the incomplete form shows its own error
    answered = browsers[1].post(url, {**incomplete, "csrfmiddlewaretoken": second})
    assert answered.status_code == 422
    assert 'value="US-CA"' in answered.text and "Enter the certificate&#x27;s expiry date" in answered.text
    # and the page kept for GETs is unchanged by that POST
    assert _text(_get(browsers[0], "tax", account)) == _text(pages[0])


def test_a_trials_days_left_turn_over_on_a_kept_dashboard_at_the_time_the_trial_ends(account, client_for, time_machine):
    # given a trial ending 9 days and 30 minutes from now (at 12:30 UTC), its dashboard cached and its content kept
    subscription = account.subscription
    subscription.status = "trialing"
    subscription.trial_end = NOW + timedelta(days=9, minutes=30)
    subscription.save()
    client = client_for(account.owner)
    assert "10 days left in your trial" in _text(_get(client, "customer_dashboard", account))
    version = customer_data_version(customer_id=account.customer.pk)
    # when the clock alone moves to 12:29:58 (within the cache's hour), the kept content still holds
    time_machine.move_to(NOW + timedelta(minutes=29, seconds=58), tick=False)
    kept = _get(client, "customer_dashboard", account)
    assert "portal/_enablement.html" not in [t.name for t in kept.templates]
    assert "10 days left in your trial" in _text(kept)
    # then at 12:30 the count is one fewer, worked out anew from the same data version
    time_machine.move_to(NOW + timedelta(minutes=30), tick=False)
    turned = _get(client, "customer_dashboard", account)
    assert "portal/_enablement.html" in [t.name for t in turned.templates]
    assert "9 days left in your trial" in _text(turned)
    assert customer_data_version(customer_id=account.customer.pk) == version


def test_the_dashboards_survey_prompt_is_each_sessions_own_around_the_kept_content(account, client_for):
    # given the owner signed in from two browsers, the first having just signed up (asked "How easy was that?")
    just_signed_up, other = client_for(account.owner), client_for(account.owner)
    session = just_signed_up.session
    session["portal_signup_survey"] = account.customer.pk
    session.save()
    plain = _text(_get(other, "customer_dashboard", account))
    # when both open the dashboard, the second one from the kept content
    asked = _text(_get(just_signed_up, "customer_dashboard", account))
    kept = _get(other, "customer_dashboard", account)
    # then only the browser that signed up is asked, and both show the same dashboard around it
    assert "How easy was that?" in asked and "How easy was that?" not in _text(kept) and _text(kept) == plain
    assert "portal/_enablement.html" not in [t.name for t in kept.templates]
    assert "Seats: 2 of 10 in use" in asked


def test_the_package_page_is_kept_with_each_browsers_own_token(account):
    browsers = [Client() for _ in range(2)]
    for browser in browsers:
        browser.force_login(account.owner)
    pages = [_get(browser, "package", account) for browser in browsers]
    assert "portal/package.html" in [t.name for t in pages[1].templates]
    assert _text(pages[0]) == _text(pages[1]) and "Preview cancellation" in _text(pages[1])
    assert _token(pages[0]) != _token(pages[1]) and "csrf-token-of-this-request" not in pages[1].text
