import pytest

from subscriptions.exceptions import (
    AddonAlreadyActive,
    AddonNotActive,
    AddonNotAvailable,
    CancellationError,
    NoChange,
    PackageNotAvailable,
    SeatsAboveMaximum,
    SeatsBelowAssigned,
    SubscriptionNotChangeable,
    UnknownPackage,
)
from subscriptions.models import (
    AuditEvent,
    PackageComponent,
    ScheduledChange,
    SubscriptionAddon,
    SubscriptionChange,
    SubscriptionStatus,
)
from subscriptions.services.changes import (
    subscription_addon_add_apply,
    subscription_addon_add_preview,
    subscription_addon_remove_apply,
    subscription_addon_remove_preview,
    subscription_cancel_apply,
    subscription_cancel_preview,
    subscription_change_package_apply,
    subscription_change_package_preview,
    subscription_reactivate_apply,
    subscription_reactivate_preview,
)
from tests.factories import PackageFactory, SeatAssignmentFactory, SubscriptionFactory, UserFactory, utc

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("worked_example_clock")]

NOV_12 = utc(2026, 11, 12, 15, 30)
DEC_1 = utc(2026, 12, 1)


def test_subscription_change_package_upgrade_credits_old_and_charges_new_prorated(subscription):
    # given Team, 10 seats: 100.00 + 5 × 10.00 = 150.00 a month; Business with 10 seats: 300.00 (10 included)
    preview = subscription_change_package_preview(subscription_id=subscription.pk, package_slug="business", at=NOV_12)
    assert preview.immediate and preview.effective_at == NOV_12
    credit, charge = preview.lines
    assert credit.description == "Unused time on Team (10 seats), Nov 12\u2009–\u2009Dec 1, 2026"
    assert (credit.unit_amount_minor, credit.amount_minor, credit.proration) == (-15_000, -9_500, True)
    assert charge.description == "Business (10 seats), Nov 12\u2009–\u2009Dec 1, 2026 (prorated)"
    assert (charge.unit_amount_minor, charge.amount_minor, charge.sku_code) == (30_000, 19_000, "PLAT-BASE-M")
    assert preview.amount_due_now_minor == 9_500
    assert preview.next_recurring_amount_minor == 30_000
    assert preview.summary == "Move to Business, starting now"


def test_subscription_change_package_apply_upgrade_moves_to_new_price_snapshot(subscription, catalog):
    owner = UserFactory()
    preview = subscription_change_package_preview(subscription_id=subscription.pk, package_slug="business", at=NOV_12)
    change = subscription_change_package_apply(
        subscription_id=subscription.pk,
        package_slug="business",
        expected_version=preview.version,
        actor=owner,
        at=NOV_12,
    )
    subscription.refresh_from_db()
    assert subscription.package == catalog.business
    assert (subscription.flat_amount_minor, subscription.seat_amount_minor, subscription.included_seats) == (
        30_000,
        2_000,
        10,
    )
    assert subscription.price.package == catalog.business
    assert (subscription.current_period_start, subscription.current_period_end) == (utc(2026, 11, 1), DEC_1)
    assert change.result == preview.to_dict()
    assert change.amount_due_now_minor == 9_500
    event = AuditEvent.objects.get(action="subscription.package_changed")
    assert (event.before["package"], event.after["package"]) == ("team", "business")


def test_subscription_change_package_raises_seats_to_new_minimum(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=6)
    preview = subscription_change_package_preview(subscription_id=subscription.pk, package_slug="business", at=NOV_12)
    assert "Your seats change from 6 to 10." in preview.notes
    subscription_change_package_apply(
        subscription_id=subscription.pk,
        package_slug="business",
        expected_version=preview.version,
        actor=None,
        at=NOV_12,
    )
    subscription.refresh_from_db()
    assert subscription.seats == 10
    assert subscription.seat_ledger.get().seats_to == 10


def test_subscription_change_package_downgrade_is_scheduled_for_period_end(subscription, catalog):
    preview = subscription_change_package_preview(subscription_id=subscription.pk, package_slug="starter", at=NOV_12)
    assert not preview.immediate
    assert preview.effective_at == DEC_1
    assert preview.lines == ()
    assert preview.next_recurring_amount_minor == 8_500  # 50.00 + 7 × 5.00
    subscription_change_package_apply(
        subscription_id=subscription.pk, package_slug="starter", expected_version=preview.version, actor=None, at=NOV_12
    )
    subscription.refresh_from_db()
    assert subscription.package == catalog.team
    scheduled = ScheduledChange.objects.get()
    assert scheduled.kind == "package" and scheduled.payload["package"] == "starter"
    assert scheduled.effective_at == DEC_1


def test_subscription_change_package_monthly_to_annual_starts_new_term_now(subscription):
    preview = subscription_change_package_preview(
        subscription_id=subscription.pk, package_slug="team", interval="year", at=NOV_12
    )
    assert preview.immediate
    credit, charge = preview.lines
    assert credit.amount_minor == -9_500
    assert charge.description == "Team (10 seats), annual, Nov 12, 2026\u2009–\u2009Nov 12, 2027"
    assert (charge.amount_minor, charge.proration) == (150_000, False)
    assert preview.amount_due_now_minor == 140_500
    subscription_change_package_apply(
        subscription_id=subscription.pk,
        package_slug="team",
        interval="year",
        expected_version=preview.version,
        actor=None,
        at=NOV_12,
    )
    subscription.refresh_from_db()
    assert subscription.interval == "year"
    assert (subscription.current_period_start, subscription.current_period_end) == (
        utc(2026, 11, 12),
        utc(2027, 11, 12),
    )
    assert subscription.committed_seats == 10


def test_subscription_change_package_annual_to_monthly_waits_for_term_end(catalog):
    subscription = SubscriptionFactory(package=catalog.team, interval="year", seats=10)
    preview = subscription_change_package_preview(
        subscription_id=subscription.pk, package_slug="team", interval="month", at=NOV_12
    )
    assert not preview.immediate and preview.effective_at == utc(2027, 11, 1)
    assert preview.next_recurring_amount_minor == 15_000


@pytest.mark.parametrize(
    ("slug", "interval", "error", "message"),
    [
        ("nope", None, UnknownPackage, "There is no package called “nope”."),
        ("", None, UnknownPackage, "Choose a package."),
        ("premium-support", None, PackageNotAvailable, "Premium support is not available as a change from Team."),
        ("team", None, NoChange, "You are already on Team with monthly billing."),
        ("team", "week", PackageNotAvailable, "Choose monthly or annual billing, not “week”."),
        ("starter", None, SeatsAboveMaximum, "Starter allows at most 10 seats."),
    ],
)
def test_subscription_change_package_refuses_bad_input_and_writes_nothing(catalog, slug, interval, error, message):
    subscription = SubscriptionFactory(package=catalog.team, seats=12)
    with pytest.raises(error) as caught:
        subscription_change_package_apply(
            subscription_id=subscription.pk,
            package_slug=slug,
            interval=interval,
            expected_version=subscription.version,
            actor=None,
            at=NOV_12,
        )
    assert caught.value.message == message
    subscription.refresh_from_db()
    assert subscription.version == 1 and subscription.package == catalog.team
    assert not SubscriptionChange.objects.exists() and not ScheduledChange.objects.exists()


def test_subscription_change_package_refuses_package_not_offered_from_current(catalog):
    hidden = PackageFactory(slug="enterprise", name="Enterprise", is_public=False)
    subscription = SubscriptionFactory(package=catalog.team)
    with pytest.raises(PackageNotAvailable) as caught:
        subscription_change_package_preview(subscription_id=subscription.pk, package_slug=hidden.slug, at=NOV_12)
    assert caught.value.message == "Enterprise is not available as a change from Team."


def test_subscription_change_package_refuses_package_without_price_in_customer_currency(catalog):
    catalog.business.prices.filter(currency="EUR").delete()
    from tests.factories import CustomerFactory

    subscription = SubscriptionFactory(customer=CustomerFactory(currency="EUR"), package=catalog.team)
    with pytest.raises(PackageNotAvailable) as caught:
        subscription_change_package_preview(subscription_id=subscription.pk, package_slug="business", at=NOV_12)
    assert caught.value.message == "Business is not offered with monthly billing in EUR."


def test_subscription_change_package_refuses_dropping_below_assigned(catalog):
    subscription = SubscriptionFactory(package=catalog.team, seats=10)
    for _ in range(8):
        SeatAssignmentFactory(subscription=subscription)
    with pytest.raises(SeatsBelowAssigned) as caught:
        subscription_change_package_preview(subscription_id=subscription.pk, package_slug="starter", seats=6, at=NOV_12)
    assert caught.value.message == "8 people hold seats; unassign 2 before going down to 6"


# --- add-ons ---------------------------------------------------------------------------------------------------


def test_subscription_addon_add_is_immediate_and_prorated(subscription):
    preview = subscription_addon_add_preview(subscription_id=subscription.pk, addon_slug="premium-support", at=NOV_12)
    [line] = preview.lines
    assert line.description == "Premium support, Nov 12\u2009–\u2009Dec 1, 2026 (prorated)"
    assert (line.amount_minor, line.sku_code, line.tax_category) == (1_900, "SUP-PREM-M", "services")
    assert preview.next_recurring_amount_minor == 18_000
    subscription_addon_add_apply(
        subscription_id=subscription.pk,
        addon_slug="premium-support",
        expected_version=preview.version,
        actor=None,
        at=NOV_12,
    )
    addon = SubscriptionAddon.objects.get()
    assert (addon.flat_amount_minor, addon.started_at, addon.ended_at) == (3_000, NOV_12, None)


def test_subscription_addon_add_refuses_twice_and_unknown_and_foreign(subscription, catalog):
    preview = subscription_addon_add_preview(subscription_id=subscription.pk, addon_slug="premium-support", at=NOV_12)
    subscription_addon_add_apply(
        subscription_id=subscription.pk, addon_slug="premium-support", expected_version=1, actor=None, at=NOV_12
    )
    with pytest.raises(AddonAlreadyActive):
        subscription_addon_add_preview(subscription_id=subscription.pk, addon_slug="premium-support", at=NOV_12)
    with pytest.raises(UnknownPackage):
        subscription_addon_add_preview(subscription_id=subscription.pk, addon_slug="nope", at=NOV_12)
    with pytest.raises(AddonNotAvailable):
        subscription_addon_add_preview(subscription_id=subscription.pk, addon_slug="business", at=NOV_12)
    assert preview.version == 1


def test_subscription_addon_remove_is_scheduled_and_adding_back_keeps_it(subscription):
    subscription_addon_add_apply(
        subscription_id=subscription.pk, addon_slug="premium-support", expected_version=1, actor=None, at=NOV_12
    )
    preview = subscription_addon_remove_preview(
        subscription_id=subscription.pk, addon_slug="premium-support", at=NOV_12
    )
    assert not preview.immediate and preview.lines == ()
    assert preview.next_recurring_amount_minor == 15_000
    assert preview.summary == "Remove Premium support on Dec 1, 2026"
    subscription_addon_remove_apply(
        subscription_id=subscription.pk,
        addon_slug="premium-support",
        expected_version=preview.version,
        actor=None,
        at=NOV_12,
    )
    assert SubscriptionAddon.objects.get().ended_at is None
    with pytest.raises(NoChange):
        subscription_addon_remove_preview(subscription_id=subscription.pk, addon_slug="premium-support", at=NOV_12)
    keep = subscription_addon_add_preview(subscription_id=subscription.pk, addon_slug="premium-support", at=NOV_12)
    assert keep.lines == () and keep.next_recurring_amount_minor == 18_000
    subscription_addon_add_apply(
        subscription_id=subscription.pk,
        addon_slug="premium-support",
        expected_version=keep.version,
        actor=None,
        at=NOV_12,
    )
    assert ScheduledChange.objects.get().canceled_at == NOV_12


def test_subscription_addon_remove_refuses_addon_not_on_subscription(subscription):
    with pytest.raises(AddonNotActive) as caught:
        subscription_addon_remove_preview(subscription_id=subscription.pk, addon_slug="premium-support", at=NOV_12)
    assert caught.value.message == "Premium support is not part of your subscription."


def test_subscription_change_package_keeps_addons_and_counts_them_in_recurring(subscription):
    subscription_addon_add_apply(
        subscription_id=subscription.pk, addon_slug="premium-support", expected_version=1, actor=None, at=NOV_12
    )
    preview = subscription_change_package_preview(subscription_id=subscription.pk, package_slug="business", at=NOV_12)
    assert preview.next_recurring_amount_minor == 33_000
    yearly = subscription_change_package_preview(
        subscription_id=subscription.pk, package_slug="team", interval="year", at=NOV_12
    )
    assert [line.amount_minor for line in yearly.lines] == [-9_500, 150_000, -1_900, 30_000]
    subscription_change_package_apply(
        subscription_id=subscription.pk,
        package_slug="team",
        interval="year",
        expected_version=yearly.version,
        actor=None,
        at=NOV_12,
    )
    live = SubscriptionAddon.objects.get(ended_at__isnull=True)
    assert live.flat_amount_minor == 30_000


# --- cancel / undo ---------------------------------------------------------------------------------------------


def test_subscription_cancel_at_period_end_then_undo(subscription):
    owner = UserFactory()
    preview = subscription_cancel_preview(subscription_id=subscription.pk, reason="Too expensive", at=NOV_12)
    assert not preview.immediate and preview.effective_at == DEC_1
    assert preview.next_recurring_amount_minor == 0 and preview.amount_due_now_minor == 0
    assert preview.summary == "Your subscription ends on Dec 1, 2026; you keep everything until then"
    subscription_cancel_apply(
        subscription_id=subscription.pk,
        reason="Too expensive",
        expected_version=preview.version,
        actor=owner,
        at=NOV_12,
    )
    subscription.refresh_from_db()
    assert subscription.cancel_at_period_end and subscription.cancel_reason == "Too expensive"
    assert subscription.status == SubscriptionStatus.ACTIVE
    assert AuditEvent.objects.get(action="subscription.cancel_scheduled").reason == "Too expensive"
    with pytest.raises(CancellationError):
        subscription_cancel_preview(subscription_id=subscription.pk, at=NOV_12)

    undo = subscription_reactivate_preview(subscription_id=subscription.pk, at=NOV_12)
    assert undo.next_recurring_amount_minor == 15_000
    subscription_reactivate_apply(
        subscription_id=subscription.pk, expected_version=undo.version, actor=owner, at=NOV_12
    )
    subscription.refresh_from_db()
    assert not subscription.cancel_at_period_end and subscription.cancel_reason == ""
    with pytest.raises(CancellationError):
        subscription_reactivate_preview(subscription_id=subscription.pk, at=NOV_12)


def test_subscription_cancel_refuses_ended_subscription(catalog):
    subscription = SubscriptionFactory(package=catalog.team, status=SubscriptionStatus.ENDED)
    with pytest.raises(SubscriptionNotChangeable):
        subscription_cancel_preview(subscription_id=subscription.pk, at=NOV_12)


def test_subscription_change_preview_refuses_unknown_subscription(db):
    with pytest.raises(SubscriptionNotChangeable):
        subscription_cancel_preview(subscription_id=999_999, at=NOV_12)


def test_subscription_change_lines_carry_sku_even_without_seat_component(catalog):
    PackageComponent.objects.filter(package=catalog.team, sku__code="SEAT-STD-M").delete()
    subscription = SubscriptionFactory(package=catalog.team, seats=10)
    from subscriptions.services.changes import subscription_change_seats_preview

    preview = subscription_change_seats_preview(subscription_id=subscription.pk, seats=11, at=NOV_12)
    assert preview.lines[0].sku_code == "PLAT-BASE-M"


def test_subscription_change_package_to_annual_during_trial_keeps_the_trial(catalog):
    trial_end = utc(2026, 11, 15)
    subscription = SubscriptionFactory(
        package=catalog.team,
        status=SubscriptionStatus.TRIALING,
        current_period_end=trial_end,
        trial_end=trial_end,
    )
    subscription_addon_add_apply(
        subscription_id=subscription.pk, addon_slug="premium-support", expected_version=1, actor=None, at=NOV_12
    )
    preview = subscription_change_package_preview(
        subscription_id=subscription.pk, package_slug="team", interval="year", at=NOV_12
    )
    assert preview.immediate and preview.lines == () and preview.amount_due_now_minor == 0
    subscription_change_package_apply(
        subscription_id=subscription.pk,
        package_slug="team",
        interval="year",
        expected_version=preview.version,
        actor=None,
        at=NOV_12,
    )
    subscription.refresh_from_db()
    assert subscription.interval == "year" and subscription.current_period_end == trial_end
    assert subscription.committed_seats == 10
    assert SubscriptionAddon.objects.get(ended_at__isnull=True).flat_amount_minor == 30_000
    from subscriptions.services.lifecycle import subscription_renew

    result = subscription_renew(subscription_id=subscription.pk, as_of=trial_end)
    assert result.status == "active"
    assert (result.periods[0].period_start, result.periods[0].period_end) == (trial_end, utc(2027, 11, 15))
    assert result.periods[0].amount_minor == 150_000 + 30_000


# --- loading: a preview reads the subscription, its add-ons and its scheduled changes once ---------------------


def _busy(catalog):
    """Team, 8 seats, with an add-on, a scheduled downgrade to Starter and someone holding a seat."""
    from subscriptions.services.changes import subscription_change_package_apply

    subscription = SubscriptionFactory(package=catalog.team, seats=8)
    SeatAssignmentFactory(subscription=subscription)
    subscription_addon_add_apply(
        subscription_id=subscription.pk, addon_slug="premium-support", expected_version=1, actor=None, at=NOV_12
    )
    subscription_change_package_apply(
        subscription_id=subscription.pk, package_slug="starter", expected_version=2, actor=None, at=NOV_12
    )
    return subscription


def _previews(subscription_id, **loaded):
    from subscriptions.services.changes import subscription_change_seats_preview

    return {
        "seats up": lambda: subscription_change_seats_preview(subscription_id=subscription_id, seats=10, **loaded),
        "seats down": lambda: subscription_change_seats_preview(subscription_id=subscription_id, seats=6, **loaded),
        "package": lambda: subscription_change_package_preview(
            subscription_id=subscription_id, package_slug="business", **loaded
        ),
        "annual": lambda: subscription_change_package_preview(
            subscription_id=subscription_id, package_slug="team", interval="year", **loaded
        ),
        "remove add-on": lambda: subscription_addon_remove_preview(
            subscription_id=subscription_id, addon_slug="premium-support", **loaded
        ),
        "cancel": lambda: subscription_cancel_preview(subscription_id=subscription_id, reason="Budget", **loaded),
    }


def test_subscription_change_preview_with_the_loaded_subscription_reloads_nothing(catalog):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from subscriptions.services.changes import subscriptions_for_change

    # given a subscription loaded once, as the portal loads it
    subscription = _busy(catalog)
    loaded = subscriptions_for_change().get(pk=subscription.pk)
    for name, preview in _previews(subscription.pk, subscription=loaded, at=NOV_12).items():
        # when previewing any change on it
        with CaptureQueriesContext(connection) as queries:
            result = preview()
        # then the subscription, its add-ons and scheduled changes and its seats are not read again (only the
        # catalog a package change moves to is), and the preview is the one the service computes on its own
        reread = [
            q["sql"]
            for q in queries.captured_queries
            for table in ("subscription", "subscriptionaddon", "scheduledchange", "seatassignment")
            if f'FROM "subscriptions_{table}"' in q["sql"]
        ]
        assert reread == [], name
        assert len(queries.captured_queries) <= 2, (name, [q["sql"] for q in queries.captured_queries])
        assert result == _previews(subscription.pk, at=NOV_12)[name](), name


def test_subscription_change_preview_refuses_a_subscription_that_is_not_the_one_named(catalog, subscription):
    from subscriptions.services.changes import subscription_change_seats_preview, subscriptions_for_change

    other = subscriptions_for_change().get(pk=_busy(catalog).pk)
    with pytest.raises(ValueError):
        subscription_change_seats_preview(subscription_id=subscription.pk, seats=12, subscription=other)


def test_subscription_change_preview_says_which_period_the_recurring_amount_is_for(subscription):
    yearly = subscription_change_package_preview(
        subscription_id=subscription.pk, package_slug="team", interval="year", at=NOV_12
    )
    assert (yearly.recurring_interval, yearly.current_interval) == ("year", "month")
    assert yearly.to_dict()["recurring_interval"] == "year"
    business = subscription_change_package_preview(subscription_id=subscription.pk, package_slug="business", at=NOV_12)
    assert (business.recurring_interval, business.current_interval) == ("month", "month")
