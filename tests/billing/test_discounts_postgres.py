"""A coupon's and a promotion code's redemption limits hold under concurrency — needs PostgreSQL's row locks (SQLite
serialises writers, so the race cannot happen there). Run with your own database, e.g.
DATABASE_URL=postgres://continuum:continuum@127.0.0.1:5432/continuum_h22 pytest -m postgres tests/billing/."""

import threading

import pytest
from django.db import connection, connections

from billing.exceptions import PromotionCodeLimitReached
from billing.models import Discount
from billing.services.discounts import discount_redeem
from tests.billing.discount_support import make_code, make_coupon
from tests.factories import CustomerFactory, SubscriptionFactory

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(subscriptions, code: str) -> tuple[list[Discount], list[BaseException]]:
    barrier = threading.Barrier(len(subscriptions))
    won: list[Discount] = []
    refused: list[BaseException] = []

    def worker(subscription):
        try:
            barrier.wait()
            won.append(discount_redeem(customer=subscription.customer, subscription=subscription, promotion_code=code))
        except BaseException as exc:  # surfaced below
            refused.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(s,)) for s in subscriptions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, refused


@pytest.mark.parametrize("limit_on", ["coupon", "promotion_code"])
def test_two_customers_redeeming_the_last_use_at_once_one_wins_one_is_refused(limit_on):
    assert connection.vendor == "postgresql"
    # given a code with one use left (the coupon's or the code's own limit)
    coupon = make_coupon(max_redemptions=1 if limit_on == "coupon" else None)
    make_code(coupon, max_redemptions=1 if limit_on == "promotion_code" else None)
    subscriptions = [SubscriptionFactory(customer=CustomerFactory()) for _ in range(2)]
    # when both redeem it at the same moment
    won, refused = _race(subscriptions, "launch20")
    # then one discount, one coded refusal, and the counters say one
    assert len(won) == 1 and len(refused) == 1, refused
    assert isinstance(refused[0], PromotionCodeLimitReached)
    assert Discount.objects.count() == 1
    coupon.refresh_from_db()
    assert coupon.times_redeemed == coupon.promotion_codes.get().times_redeemed == 1
