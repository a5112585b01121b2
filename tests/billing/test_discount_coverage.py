"""The one discount coverage rule (issue 22, docs/billing-rules.md "Discounts"): a discount applies to a line when it
is active at the instant the line's charge begins — a period's start for its own lines, the change instant for a
mid-period change's lines. Preview, immediate billing and the billing run all ask it, so a change with a discount
(or a promotion code entered on the change) is invoiced exactly as previewed, to the minor unit, and the preview's
"until" date is the end of the discount it redeems.

The catalog is tests/subscriptions/conftest.py's (Team 100.00 + 10.00/seat above 5, Business 300.00 + 20.00/seat
above 10). November [1 Nov 2026, 1 Dec 2026) is invoiced by the billing run on 1 Nov; the changes happen on
16 Nov at 03:07, the clock moved there with time-machine.
"""

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import Discount, Invoice, InvoiceKind, LineKind
from billing.services.billing_run import billing_run
from billing.services.changes import change_apply, change_preview, changes_bill_unbilled
from billing.services.discounts import discount_end, discount_redeem
from subscriptions.services.changes import subscription_change_seats_apply
from tests.billing.conftest import established
from tests.billing.discount_support import make_code, make_coupon
from tests.factories import SubscriptionFactory, utc
from tests.subscriptions.conftest import catalog  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db
NOW = utc(2026, 11, 1, 0, 5)
MID = utc(2026, 11, 16, 3, 7)
DECEMBER = utc(2026, 12, 1)

SHAPES = {
    "20 % forever": {"percent": "20"},
    "20 % once": {"percent": "20", "duration": "once"},
    "12.5 % for 3 periods": {"percent": "12.5", "duration": "repeating", "periods": 3},
    "33.33 off for 2 periods": {"amounts": {"USD": 3_333}, "duration": "repeating", "periods": 2},
}
CHANGES = {
    "seat increase": ("seats", {"seats": 14}),
    "upgrade": ("package", {"package_slug": "business", "interval": "month", "seats": 12}),
    "to annual billing": ("package", {"package_slug": "team", "interval": "year", "seats": 10}),
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


@pytest.fixture
def invoiced_team(customer, catalog, ca_tax, staff):  # noqa: F811
    """Team with 10 seats (150.00 a month), November already invoiced by the billing run."""
    with time_machine.travel(NOW, tick=False):
        established(customer, staff)
        subscription = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
        billing_run(as_of=NOW)
    return subscription


def _preview_then_apply(subscription, owner, kind, params, *, code=None, at=MID, key="k1", tick=False):
    with time_machine.travel(at, tick=tick):
        billed = change_preview(subscription_id=subscription.pk, kind=kind, promotion_code=code, **params)
        result = change_apply(
            subscription_id=subscription.pk,
            kind=kind,
            expected_version=billed.version,
            actor=owner,
            promotion_code=code,
            idempotency_key=key,
            **params,
        )
    return billed, result


def _assert_billed_as_previewed(billed, result):
    invoice = result.invoice
    assert billed.billing_mode == "invoice_now" and invoice is not None
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (
        billed.subtotal_minor,
        billed.tax_minor,
        billed.total_minor,
    )
    assert [line.amount_minor for line in invoice.lines.all() if line.kind == LineKind.DISCOUNT] == [
        line.amount_minor for line in billed.discount_lines
    ]


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("when", ["code on the change", "redeemed mid-period", "ended mid-period"])
def test_a_change_with_a_discount_is_invoiced_exactly_as_previewed_and_until_the_date_the_preview_said(
    customer, invoiced_team, owner, change, shape, when
):
    # given a coupon behind the code LAUNCH20, entered with the change or redeemed (and maybe ended) five days before
    make_code(make_coupon(**SHAPES[shape]))
    code = "launch20" if when == "code on the change" else None
    if code is None:
        with time_machine.travel(MID - timedelta(days=5), tick=False):
            discount = discount_redeem(customer=customer, subscription=invoiced_team, promotion_code="LAUNCH20")
            if when == "ended mid-period":
                discount_end(discount_id=discount.pk)  # ends at the next boundary: November keeps it
    # when the change is previewed and applied on 16 Nov, billed at once
    kind, params = CHANGES[change]
    billed, result = _preview_then_apply(invoiced_team, owner, kind, params, code=code)
    # then the invoice bills the preview's lines, discount lines and totals to the minor unit
    _assert_billed_as_previewed(billed, result)
    # the discount is active at the change instant: it applies (a fixed amount the period uses up already adds no
    # line: the discounted prices differ as the plain ones)
    assert billed.discount_description.startswith("Launch 20")
    if "percent" in SHAPES[shape]:
        assert billed.discount_lines
    # and the preview said until when the discount runs: the end of the discount the customer now has
    discount = Discount.objects.get(subscription=invoiced_team)
    assert billed.discount_ends_at == discount.ends_at


@pytest.mark.parametrize("change", CHANGES)
def test_a_code_on_a_change_is_previewed_and_billed_on_a_clock_that_ticks(customer, invoiced_team, owner, change):
    # given a real, ticking clock (the pinned one above stands still): the code is checked, and redeemed, a little
    # after the change's own instant was taken — found in a real browser, where the preview showed no discount
    make_code(make_coupon(percent="20"))
    kind, params = CHANGES[change]
    billed, result = _preview_then_apply(invoiced_team, owner, kind, params, code="launch20", tick=True)
    # then the preview carries the discount, and the invoice bills it exactly as previewed
    assert billed.discount_lines and billed.discount_description.startswith("Launch 20")
    _assert_billed_as_previewed(billed, result)


@pytest.mark.parametrize(
    "shape, ends_at, next_discount_minor",
    [
        # once: the new annual term (billed now) is its one period; the first renewal is not discounted
        ("20 % once", utc(2027, 11, 16), 0),
        # three periods: this term and the next two renewals
        ("12.5 % for 3 periods", utc(2029, 11, 16), -18_750),
    ],
)
def test_a_code_on_a_move_to_annual_billing_previews_the_end_and_the_renewal_it_redeems(
    customer, invoiced_team, owner, shape, ends_at, next_discount_minor
):
    # given Team monthly, November invoiced; a code entered on a move to annual billing on 16 Nov (a new term
    # [16 Nov 2026, 16 Nov 2027) starts, billed by the change's own invoice)
    make_code(make_coupon(**SHAPES[shape]))
    billed, result = _preview_then_apply(invoiced_team, owner, *CHANGES["to annual billing"], code="LAUNCH20")
    # then the preview's end date and its estimate of the first annual renewal are those of the discount redeemed
    discount = Discount.objects.get(subscription=invoiced_team)
    assert discount.ends_at == ends_at
    assert billed.discount_ends_at == ends_at
    assert billed.next_recurring_discount_minor == next_discount_minor  # 12.5 % of the 1,500.00 renewal
    _assert_billed_as_previewed(billed, result)
    # and the discount is active for the whole new term: it started with it
    assert discount.starts_at == utc(2026, 11, 16)


def test_a_discount_redeemed_mid_period_does_not_reach_back_to_a_change_made_before_it(customer, invoiced_team, staff):
    # given staff add 4 seats on 11 Nov through the subscriptions admin (billing is not called)
    with time_machine.travel(MID - timedelta(days=5), tick=False):
        subscription_change_seats_apply(subscription_id=invoiced_team.pk, seats=14, expected_version=1, actor=staff)
    # and the customer redeems 20 % off on 16 Nov, November being invoiced already
    with time_machine.travel(MID, tick=False):
        discount = discount_redeem(customer=customer, subscription=invoiced_team, coupon_id=make_coupon().pk)
        # when the billing run's safety net bills the change afterwards
        assert changes_bill_unbilled() == 1
    # then the change is billed undiscounted: the discount was not active when it was made
    assert discount.starts_at == MID
    invoice = Invoice.objects.get(kind=InvoiceKind.PRORATION)
    assert not invoice.lines.filter(kind=LineKind.DISCOUNT).exists()
    # and December, the first period it covers in full, is discounted
    billing_run(as_of=DECEMBER + timedelta(hours=1))
    december = Invoice.objects.get(subscription=invoiced_team, kind=InvoiceKind.REGULAR, period_start=DECEMBER)
    assert december.lines.filter(kind=LineKind.DISCOUNT, discount=discount).exists()


def test_a_discount_attached_before_the_current_period_is_invoiced_covers_all_of_it(customer, catalog, ca_tax):  # noqa: F811
    # given November has begun but the billing run has not drafted it yet (catch-up)
    with time_machine.travel(NOW, tick=False):
        subscription = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
    with time_machine.travel(NOW + timedelta(hours=5), tick=False):
        discount = discount_redeem(
            customer=customer, subscription=subscription, coupon_id=make_coupon(duration="once").pk
        )
        billing_run(as_of=NOW + timedelta(hours=5))
    # then it is active from the period's start, so November's invoice carries it, and it ends with November
    assert (discount.starts_at, discount.ends_at) == (subscription.current_period_start, DECEMBER)
    november = Invoice.objects.get(subscription=subscription, kind=InvoiceKind.REGULAR)
    assert november.subtotal_minor == 12_000


def test_a_once_discount_from_the_last_period_no_longer_applies_to_a_change_after_its_end(
    customer,
    catalog,  # noqa: F811
    ca_tax,
    owner,
):
    # given 20 % once on October (it ends on 1 Nov, the boundary), November invoiced without it
    with time_machine.travel(utc(2026, 10, 1, 0, 5), tick=False):
        subscription = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
        discount = discount_redeem(
            customer=customer, subscription=subscription, coupon_id=make_coupon(duration="once").pk
        )
        billing_run(as_of=utc(2026, 10, 1, 0, 5))
    assert discount.ends_at == utc(2026, 11, 1)
    billing_run(as_of=NOW)
    # when seats are added on 16 Nov
    billed, result = _preview_then_apply(subscription, owner, *CHANGES["seat increase"])
    # then neither the preview nor the invoice discounts them
    assert billed.discount_lines == ()
    _assert_billed_as_previewed(billed, result)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    minutes=st.integers(1, 30 * 24 * 60 - 1),
    added=st.integers(1, 20),
    shape=st.sampled_from(sorted(SHAPES)),
    code_on_change=st.booleans(),
)
def test_property_a_seat_increase_at_any_instant_is_invoiced_as_previewed(
    customer, invoiced_team, owner, minutes, added, shape, code_on_change
):
    """For a seat increase at a random instant of November with a random coupon shape, entered with the change or
    redeemed at the period's start, the invoice's totals and discount lines are the preview's."""
    with transaction.atomic():  # each example starts from the invoiced November of the fixture
        cache.clear()
        make_code(make_coupon(**SHAPES[shape]))
        if not code_on_change:
            with time_machine.travel(NOW, tick=False):
                discount_redeem(customer=customer, subscription=invoiced_team, promotion_code="LAUNCH20")
        at = NOW + timedelta(minutes=minutes)
        billed, result = _preview_then_apply(
            invoiced_team,
            owner,
            "seats",
            {"seats": invoiced_team.seats + added},
            code="LAUNCH20" if code_on_change else None,
            at=at,
        )
        if billed.billing_mode == "invoice_now":
            _assert_billed_as_previewed(billed, result)
        else:  # nothing due (a change in the last minutes rounds to zero)
            assert billed.total_minor == 0 and result.invoice is None
        transaction.set_rollback(True)


def test_migration_moves_older_discounts_to_the_start_of_the_period_they_were_applied_to(
    customer,
    catalog,  # noqa: F811
    ca_tax,
):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("billing.migrations.0010_discount_starts_at_first_covered_period")
    coupon = make_coupon()
    with time_machine.travel(NOW, tick=False):
        invoiced = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
        pending = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
        applied = discount_redeem(customer=customer, subscription=invoiced, coupon_id=coupon.pk)
        billing_run(as_of=NOW)
    assert Invoice.objects.get(subscription=invoiced).lines.filter(discount=applied).exists()
    later = Discount.objects.create(coupon=coupon, customer=customer, subscription=pending, starts_at=MID)
    # given rows as the earlier rule wrote them: starting at the redemption instant, after their period's start
    Discount.objects.filter(pk=applied.pk).update(starts_at=NOW + timedelta(minutes=1))
    Invoice.objects.filter(subscription=pending).delete()  # its November is not invoiced yet
    # when the migration runs, then each starts at the start of the period it was applied to (or will be)
    migration.forwards(apps, None)
    applied.refresh_from_db()
    later.refresh_from_db()
    assert applied.starts_at == invoiced.current_period_start
    assert later.starts_at == pending.current_period_start
