"""package_timelines_for_subscriptions: which package a subscription was on when (exports label lines with it)."""

from datetime import timedelta

from subscriptions.selectors import package_timelines_for_subscriptions
from subscriptions.services.changes import subscription_change_package_apply
from subscriptions.services.lifecycle import subscription_renew
from tests.factories import CustomerFactory, SubscriptionFactory, UserFactory


def test_package_timeline_follows_an_immediate_upgrade_and_a_scheduled_downgrade(catalog):
    # given: Team from the period start, upgraded to Business at once mid-period, then a downgrade to Starter, which
    # waits for the period boundary (every date relative to the factory's current period)
    subscription = SubscriptionFactory(customer=CustomerFactory(), package=catalog.team, seats=10)
    start, end = subscription.current_period_start, subscription.current_period_end
    upgraded_at = start + timedelta(days=11, hours=15, minutes=30)
    owner = UserFactory()
    subscription_change_package_apply(
        subscription_id=subscription.pk, package_slug="business", expected_version=1, actor=owner, at=upgraded_at
    )
    subscription.refresh_from_db()
    subscription_change_package_apply(
        subscription_id=subscription.pk,
        package_slug="starter",
        expected_version=subscription.version,
        actor=owner,
        at=upgraded_at + timedelta(days=1),
    )
    subscription_renew(subscription_id=subscription.pk, as_of=end)
    # when
    timeline = package_timelines_for_subscriptions(subscription_ids=[subscription.pk])[subscription.pk]
    # then
    assert timeline.current == "starter"
    assert timeline.at(start) == "team"
    assert timeline.at(upgraded_at - timedelta(seconds=1)) == "team"
    assert timeline.at(upgraded_at) == "business"
    assert timeline.at(end - timedelta(seconds=1)) == "business"  # the downgrade waits for the boundary
    assert timeline.at(end) == "starter"


def test_package_timeline_without_history_is_the_current_package(catalog):
    subscription = SubscriptionFactory(customer=CustomerFactory(), package=catalog.team, seats=10)
    timeline = package_timelines_for_subscriptions(subscription_ids=[subscription.pk])[subscription.pk]
    assert timeline.at(subscription.current_period_start) == "team" and timeline.at(None) == "team"
    assert package_timelines_for_subscriptions(subscription_ids=[]) == {}
