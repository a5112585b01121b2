"""Discounts and promotion codes (issue 22): computation, redemption limits, invoices, changes, credit notes.

The catalog is tests/subscriptions/conftest.py's (Team 100.00 + 10.00/seat above 5; Business 300.00 + 20.00/seat above
10; Premium support add-on 30.00, tax category "services"). The clock is pinned to 1 Nov 2026 00:05 UTC, the start
of the subscriptions' period [1 Nov, 1 Dec); every other date is relative to it.
"""

from datetime import timedelta

import pytest
import time_machine

from billing.exceptions import (
    CouponImmutable,
    CreditNoteInvalid,
    PromotionCodeExpired,
    PromotionCodeInvalid,
    PromotionCodeLimitReached,
    PromotionCodeNotApplicable,
    PromotionCodeThrottled,
)
from billing.models import Discount, Invoice, InvoiceKind, LineKind
from billing.services.billing_run import billing_run
from billing.services.changes import change_apply, change_preview
from billing.services.credit_notes import credit_note_create
from billing.services.discounts import discount_end, discount_redeem
from billing.services.profiles import billing_profile_update
from subscriptions.models import Subscription
from tests.billing.conftest import established
from tests.billing.discount_support import make_code, make_coupon
from tests.factories import CustomerFactory, SubscriptionFactory, utc
from tests.subscriptions.conftest import catalog  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db
NOW = utc(2026, 11, 1, 0, 5)
MID = NOW + timedelta(days=15)  # 16 Nov: 15 of 30 days left, factor 1/2


@pytest.fixture(autouse=True)
def _clock():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def team_sub(customer, catalog):  # noqa: F811
    return SubscriptionFactory(customer=customer, package=catalog.team, seats=10)  # 100.00 + 5 × 10.00 = 150.00


def _regular(subscription, start):
    return Invoice.objects.get(subscription=subscription, kind=InvoiceKind.REGULAR, period_start=start)


def _discount_lines(invoice):
    return [line.amount_minor for line in invoice.lines.all() if line.kind == LineKind.DISCOUNT]


# --- the worked examples of docs/billing-rules.md ----------------------------------------------------------------


def test_billing_run_percentage_discount_is_one_line_per_line_and_tax_is_on_the_discounted_amount(
    customer, team_sub, ca_tax, staff
):
    # given 20 % off forever, redeemed with the code typed in lower case
    make_code(make_coupon())
    discount_redeem(customer=customer, subscription=team_sub, promotion_code="launch20")
    # when November is invoiced
    billing_run(as_of=NOW)
    invoice = _regular(team_sub, team_sub.current_period_start)
    # then plan 100.00 − 20.00, seats 50.00 − 10.00; CA tax 7.25 % of 120.00 = 8.70
    assert [(line.kind, line.amount_minor) for line in invoice.lines.all()] == [
        (LineKind.FLAT, 10_000),
        (LineKind.DISCOUNT, -2_000),
        (LineKind.SEATS, 5_000),
        (LineKind.DISCOUNT, -1_000),
    ]
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (12_000, 870, 12_870)
    assert invoice.lines.filter(kind=LineKind.DISCOUNT).first().description == "Discount: Launch 20 (20 % off)"


def test_fixed_discount_never_takes_a_line_below_zero_and_the_excess_is_lost(customer, team_sub, ca_tax):
    # given 120.00 off each period: more than the plan line, less than the invoice
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon(amounts={"USD": 12_000}).pk)
    billing_run(as_of=NOW)
    assert _discount_lines(_regular(team_sub, team_sub.current_period_start)) == [-10_000, -2_000]


def test_fixed_discount_larger_than_the_invoice_gives_a_zero_total_never_a_credit(customer, team_sub, ca_tax):
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon(amounts={"USD": 50_000}).pk)
    billing_run(as_of=NOW)
    invoice = _regular(team_sub, team_sub.current_period_start)
    assert _discount_lines(invoice) == [-10_000, -5_000]
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (0, 0, 0)


def test_coupon_for_one_package_leaves_other_lines_alone(customer, team_sub, catalog, ca_tax, owner):  # noqa: F811
    coupon = make_coupon(percent="50", packages=[catalog.premium])
    change_apply(
        subscription_id=team_sub.pk, kind="addon_add", addon_slug="premium-support", expected_version=1, actor=owner
    )
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=coupon.pk)
    billing_run(as_of=NOW)
    invoice = _regular(team_sub, team_sub.current_period_start)
    assert [(line.sku_code, line.amount_minor) for line in invoice.lines.filter(kind=LineKind.DISCOUNT)] == [
        ("SUP-PREM-M", -1_500)
    ]


def test_once_discount_covers_the_first_period_only_and_its_end_is_not_an_amount_change(
    customer, team_sub, ca_tax, staff
):
    established(customer, staff)
    discount = discount_redeem(
        customer=customer, subscription=team_sub, coupon_id=make_coupon(duration="once", percent="50").pk
    )
    assert discount.ends_at == team_sub.current_period_end  # the first (not yet invoiced) period only
    billing_run(as_of=NOW)
    billing_run(as_of=team_sub.current_period_end + timedelta(hours=1))
    november = _regular(team_sub, team_sub.current_period_start)
    december = _regular(team_sub, team_sub.current_period_end)
    assert (november.subtotal_minor, december.subtotal_minor) == (7_500, 15_000)
    # the jump from 75.00 to 150.00 is the discount ending: no "amount changed" hold
    assert "amount_changed" not in [reason["code"] for reason in december.hold_reasons]


def test_repeating_discount_runs_for_n_periods_from_the_anchor(customer, team_sub):
    discount = discount_redeem(
        customer=customer, subscription=team_sub, coupon_id=make_coupon(duration="repeating", periods=3).pk
    )
    # November is not invoiced yet: the discount is active from its start (the one coverage rule), 3 periods on
    assert (discount.starts_at, discount.ends_at, discount.periods_total) == (utc(2026, 11, 1), utc(2027, 2, 1), 3)


def test_discount_ending_mid_period_ends_at_the_next_boundary(customer, team_sub):
    discount = discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon().pk)
    discount = discount_end(discount_id=discount.pk, at=MID)
    assert discount.ends_at == team_sub.current_period_end
    assert discount.covers(team_sub.current_period_start, team_sub.current_period_end)
    assert not discount.covers(team_sub.current_period_end, utc(2027, 1, 1))


# --- changes: the preview equals what is billed ------------------------------------------------------------------


def test_seat_increase_prorates_the_discounted_price_and_bills_exactly_the_preview(
    customer, team_sub, ca_tax, staff, owner
):
    established(customer, staff)
    make_code(make_coupon())
    # when previewing +4 seats mid-period with the code
    billed = change_preview(
        subscription_id=team_sub.pk, kind="seats", seats=14, at=MID, promotion_code="LAUNCH20", ip="10.0.0.1"
    )
    # then 4 × 10.00 × 15/30 = 20.00, less 20 % = 16.00, + 7.25 % tax (1.16)
    assert [line.amount_minor for line in billed.discount_lines] == [-400]
    assert (billed.subtotal_minor, billed.tax_minor, billed.total_minor) == (1_600, 116, 1_716)
    assert billed.discount_description == "Launch 20 (20 % off), no end date"
    assert billed.next_recurring_discount_minor == -3_800  # 20 % of 190.00
    assert not Discount.objects.exists()  # a preview redeems nothing
    result = change_apply(
        subscription_id=team_sub.pk,
        kind="seats",
        seats=14,
        expected_version=billed.version,
        actor=owner,
        at=MID,
        promotion_code="LAUNCH20",
        idempotency_key="k1",
    )
    invoice = result.invoice
    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (1_600, 116, 1_716)
    assert [line.kind for line in invoice.lines.all()] == [LineKind.PRORATION, LineKind.DISCOUNT]
    # a replay with the same key redeems nothing twice and bills nothing twice
    again = change_apply(
        subscription_id=team_sub.pk,
        kind="seats",
        seats=14,
        expected_version=billed.version,
        actor=owner,
        at=MID,
        promotion_code="LAUNCH20",
        idempotency_key="k1",
    )
    assert again.invoice == invoice and Discount.objects.count() == 1


@pytest.mark.parametrize(
    "kind, params",
    [
        ("seats", {"seats": 14}),
        ("package", {"package_slug": "business", "interval": "month", "seats": 12}),
        ("package", {"package_slug": "team", "interval": "year", "seats": 10}),
        ("addon_add", {"addon_slug": "premium-support"}),
        ("cancel", {"reason": "Budget"}),
    ],
)
@pytest.mark.parametrize("coupon_kwargs", [{"percent": "15"}, {"amounts": {"USD": 12_000}}, {"amounts": {"USD": 999}}])
def test_every_change_kind_bills_exactly_its_discounted_preview(
    customer, team_sub, ca_tax, staff, owner, kind, params, coupon_kwargs
):
    established(customer, staff)
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon(**coupon_kwargs).pk)
    billed = change_preview(subscription_id=team_sub.pk, kind=kind, at=MID, **params)
    result = change_apply(
        subscription_id=team_sub.pk, kind=kind, expected_version=billed.version, actor=owner, at=MID, **params
    )
    if billed.total_minor > 0:
        invoice = result.invoice
        assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (
            billed.subtotal_minor,
            billed.tax_minor,
            billed.total_minor,
        )
        assert _discount_lines(invoice) == [line.amount_minor for line in billed.discount_lines]
    else:
        assert result.invoice is None
        assert sum(item.amount_minor for item in result.pending_items) == billed.subtotal_minor


def test_fixed_discount_on_an_upgrade_is_the_difference_of_the_discounted_prices(customer, team_sub, owner, staff):
    # 50.00 off a period is taken by both packages in full: the discounted prices differ exactly as the plain ones
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon(amounts={"USD": 5_000}).pk)
    billed = change_preview(
        subscription_id=team_sub.pk, kind="package", package_slug="business", interval="month", seats=12, at=MID
    )
    assert sum(line.amount_minor for line in billed.discount_lines) == 0
    assert billed.subtotal_minor == sum(line.amount_minor for line in billed.preview.lines)


def test_fixed_discount_on_an_add_on_discounts_its_prorated_price(customer, team_sub, catalog, owner):  # noqa: F811
    # 10.00 off Premium support (30.00): none of it was used before the add-on existed
    make_code(make_coupon(amounts={"USD": 1_000}, packages=[catalog.premium]), code="SUPPORT10")
    params = {"subscription_id": team_sub.pk, "kind": "addon_add", "addon_slug": "premium-support", "at": MID}
    billed = change_preview(**params, promotion_code="support10")
    assert [line.amount_minor for line in billed.preview.lines] == [1_500]
    assert [line.amount_minor for line in billed.discount_lines] == [-500]  # (30.00 − 10.00) × 1/2 = 10.00
    result = change_apply(**params, expected_version=billed.version, actor=owner, promotion_code="SUPPORT10")
    assert result.invoice.subtotal_minor == billed.subtotal_minor == 1_000


def test_immediate_seat_decrease_with_percentage_credits_the_discounted_price(customer, catalog, owner):  # noqa: F811
    catalog.team.downgrade_timing = "immediate"
    catalog.team.save()
    subscription = SubscriptionFactory(customer=customer, package=catalog.team, seats=10)
    discount_redeem(customer=customer, subscription=subscription, coupon_id=make_coupon(percent="20").pk)
    billed = change_preview(subscription_id=subscription.pk, kind="seats", seats=8, at=MID)
    # −2 × 10.00 × 1/2 = −10.00 credit; 20 % of it was never paid: the credit is −8.00
    assert [line.amount_minor for line in billed.preview.lines] == [-1_000]
    assert billed.subtotal_minor == -800


def test_next_invoice_mode_carries_discount_lines_to_the_renewal(customer, team_sub, staff, owner):
    established(customer, staff)
    billing_profile_update(customer=customer, change_billing_mode="next_invoice")
    billing_run(as_of=NOW)
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon(percent="10").pk)
    team_sub.refresh_from_db()
    billed = change_preview(subscription_id=team_sub.pk, kind="seats", seats=14, at=MID)
    result = change_apply(
        subscription_id=team_sub.pk, kind="seats", seats=14, expected_version=billed.version, actor=owner, at=MID
    )
    assert [item.amount_minor for item in result.pending_items] == [2_000, -200]
    billing_run(as_of=team_sub.current_period_end + timedelta(hours=1))
    december = _regular(team_sub, team_sub.current_period_end)
    # December: 190.00 − 19.00, plus the change 20.00 − 2.00, each discount once
    assert december.subtotal_minor == 17_100 + 1_800
    assert sorted(_discount_lines(december)) == [-1_000, -900, -200]


# --- promotion codes: every refusal is coded and changes nothing -------------------------------------------------


def test_promotion_code_is_case_insensitive_and_counts_its_redemptions(customer, team_sub):
    code = make_code(make_coupon(), code="Launch20")
    discount = discount_redeem(customer=customer, subscription=team_sub, promotion_code="  lAuNcH20 ")
    code.refresh_from_db()
    code.coupon.refresh_from_db()
    assert discount.promotion_code == code and (code.times_redeemed, code.coupon.times_redeemed) == (1, 1)


@pytest.mark.parametrize(
    "coupon_kwargs, code_kwargs, error",
    [
        ({}, {"is_active": False}, PromotionCodeInvalid),
        ({"is_active": False}, {}, PromotionCodeInvalid),
        ({}, {"expires_at": NOW}, PromotionCodeExpired),
        ({"redeem_by": NOW - timedelta(days=1)}, {}, PromotionCodeExpired),
        ({"max_redemptions": 0}, {}, PromotionCodeLimitReached),
        ({}, {"max_redemptions": 0}, PromotionCodeLimitReached),
        ({"min_seats": 20}, {}, PromotionCodeNotApplicable),
        ({"amounts": {"EUR": 1_000}}, {}, PromotionCodeNotApplicable),
        ({"new_customers_only": True}, {}, PromotionCodeNotApplicable),
        ({}, {"first_time_only": True}, PromotionCodeNotApplicable),
    ],
)
def test_a_refused_code_raises_its_code_and_changes_nothing(
    customer, team_sub, staff, coupon_kwargs, code_kwargs, error
):
    established(customer, staff)  # no longer a new customer
    make_code(make_coupon(**coupon_kwargs), **code_kwargs)
    with pytest.raises(error) as raised:
        discount_redeem(customer=customer, subscription=team_sub, promotion_code="LAUNCH20")
    assert raised.value.field == "promotion_code"
    assert not Discount.objects.exists()


def test_a_coupon_for_another_package_is_not_applicable(customer, team_sub, catalog):  # noqa: F811
    make_code(make_coupon(packages=[catalog.business]))
    with pytest.raises(PromotionCodeNotApplicable, match="applies only to Business"):
        discount_redeem(customer=customer, subscription=team_sub, promotion_code="LAUNCH20")


def test_a_customer_redeems_an_offer_once_and_discounts_do_not_combine(customer, team_sub):
    make_code(make_coupon())
    make_code(make_coupon(name="Other"), code="OTHER")
    discount_redeem(customer=customer, subscription=team_sub, promotion_code="LAUNCH20")
    with pytest.raises(PromotionCodeLimitReached):
        discount_redeem(customer=customer, subscription=team_sub, promotion_code="LAUNCH20")
    with pytest.raises(PromotionCodeNotApplicable, match="do not combine"):
        discount_redeem(customer=customer, subscription=team_sub, promotion_code="OTHER")


def test_a_discount_s_end_is_written_as_the_customer_s_country_writes_dates(customer, team_sub, catalog):  # noqa: F811
    # given a 20 % code for 3 periods (so it ends on 1 Feb), and the same Team subscription for a customer in Germany
    make_code(make_coupon(duration="repeating", periods=3))
    german = SubscriptionFactory(customer=CustomerFactory(country="DE"), package=catalog.team, seats=10)
    # when each previews 4 more seats mid-period with the code
    us_preview, de_preview = (
        change_preview(subscription_id=sub.pk, kind="seats", seats=14, at=MID, promotion_code="LAUNCH20")
        for sub in (team_sub, german)
    )
    # then the discount's "until" reads as each country writes dates
    assert us_preview.discount_description == "Launch 20 (20 % off), until Feb 1, 2027"
    assert de_preview.discount_description == "Launch 20 (20 % off), until 1 Feb 2027"
    # and so does the refusal of a second discount once the German customer has redeemed it
    discount_redeem(customer=german.customer, subscription=german, promotion_code="LAUNCH20")
    make_code(make_coupon(name="Other"), code="OTHER")
    with pytest.raises(PromotionCodeNotApplicable) as refused:
        discount_redeem(customer=german.customer, subscription=german, promotion_code="OTHER")
    assert "(Launch 20 until 1 Feb 2027); discounts do not combine" in refused.value.message


def test_a_refused_code_on_a_change_rolls_the_change_back(customer, team_sub, owner):
    make_code(make_coupon(min_seats=20))
    with pytest.raises(PromotionCodeNotApplicable):
        change_apply(
            subscription_id=team_sub.pk,
            kind="seats",
            seats=14,
            expected_version=1,
            actor=owner,
            at=MID,
            promotion_code="LAUNCH20",
        )
    assert Subscription.objects.get(pk=team_sub.pk).seats == 10 and not Discount.objects.exists()


def test_min_seats_is_checked_on_the_seats_after_the_change(customer, team_sub, owner):
    make_code(make_coupon(min_seats=20))
    billed = change_preview(subscription_id=team_sub.pk, kind="seats", seats=20, at=MID, promotion_code="LAUNCH20")
    assert billed.discount_lines


def test_invalid_codes_are_throttled_per_customer_and_per_address(customer, team_sub, settings):
    settings.PROMOTION_CODE_THROTTLE_CUSTOMER_LIMIT = 3
    settings.PROMOTION_CODE_THROTTLE_IP_LIMIT = 5
    make_code(make_coupon())
    for guess in ("AAAA", "BBBB", "CCCC"):
        with pytest.raises(PromotionCodeInvalid):
            discount_redeem(customer=customer, subscription=team_sub, promotion_code=guess, ip="10.0.0.9")
    # even the right code is refused now, before it is looked up
    with pytest.raises(PromotionCodeThrottled):
        discount_redeem(customer=customer, subscription=team_sub, promotion_code="LAUNCH20", ip="10.0.0.9")
    # the same address guessing for other customers is stopped at its own limit
    for n in range(2):
        with pytest.raises(PromotionCodeInvalid):
            discount_redeem(
                customer=customer, subscription=team_sub, promotion_code=f"X{n}", ip="10.0.0.7", customer_key=f"c{n}"
            )
    assert not Discount.objects.exists()


def test_coupon_is_immutable_once_redeemed(customer, team_sub):
    coupon = make_coupon()
    coupon.name = "Launch 25"
    coupon.save()  # not redeemed yet: fine
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=coupon.pk)
    coupon.refresh_from_db()
    coupon.percent_off = 50
    with pytest.raises(CouponImmutable):
        coupon.save()
    coupon.refresh_from_db()
    coupon.is_active = False  # retiring it is allowed
    coupon.save()


# --- credit notes credit what was charged ------------------------------------------------------------------------


def test_credit_note_of_a_discounted_line_credits_at_most_what_was_charged(customer, team_sub, ca_tax, staff):
    established(customer, staff)
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon().pk)
    billing_run(as_of=NOW)
    invoice = _regular(team_sub, team_sub.current_period_start)
    plan, plan_discount = list(invoice.lines.all())[:2]
    with pytest.raises(CreditNoteInvalid, match="8000 left"):
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code="goodwill",
            lines=[{"invoice_line_id": plan.pk, "amount_minor": 10_000}],
            actor=staff,
        )
    with pytest.raises(CreditNoteInvalid):
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code="goodwill",
            lines=[{"invoice_line_id": plan_discount.pk, "amount_minor": 1}],
            actor=staff,
        )
    note = credit_note_create(
        invoice_id=invoice.pk,
        reason_code="goodwill",
        lines=[{"invoice_line_id": plan.pk, "amount_minor": 8_000}],
        actor=staff,
    )
    assert (note.subtotal_minor, note.tax_minor) == (8_000, 580)
    full = credit_note_create(invoice_id=_other_invoice(customer, staff).pk, reason_code="goodwill", actor=staff)
    assert full.total_minor > 0


def _other_invoice(customer, staff):
    from billing.services.invoices import DraftLine, invoice_approve_and_issue, invoice_draft_create

    invoice = invoice_draft_create(
        customer=customer, currency="USD", lines=[DraftLine(description="Services", unit_amount_minor=1_000)]
    )
    return invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)


def test_invoice_pdf_shows_the_discount_lines_and_the_discounted_totals(
    customer, team_sub, ca_tax, staff, django_capture_on_commit_callbacks
):
    from billing.services.documents import invoice_pdf_for_customer
    from billing.services.invoices import invoice_approve_and_issue
    from tests.billing.test_documents import _text

    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon().pk)
    billing_run(as_of=NOW, finalize=False)
    invoice = _regular(team_sub, team_sub.current_period_start)
    with django_capture_on_commit_callbacks(execute=True):
        invoice_approve_and_issue(invoice_id=invoice.pk, actor=staff)
    data, _ = invoice_pdf_for_customer(customer=customer, invoice_id=invoice.pk)
    text = _text(data)
    for expected in ("Discount: Launch 20 (20 % off)", "-$20.00", "-$10.00", "$120.00", "$8.70", "$128.70"):
        assert expected in text, expected


def test_a_change_applied_without_the_wrapper_is_billed_with_its_discount(customer, team_sub, staff):
    from billing.services.changes import changes_bill_unbilled
    from subscriptions.services.changes import subscription_change_seats_apply

    established(customer, staff)
    discount_redeem(customer=customer, subscription=team_sub, coupon_id=make_coupon().pk)
    # staff change the seats through the subscriptions admin (which cannot call billing)
    subscription_change_seats_apply(subscription_id=team_sub.pk, seats=14, expected_version=1, actor=staff, at=MID)
    assert changes_bill_unbilled() == 1
    invoice = Invoice.objects.get(kind=InvoiceKind.PRORATION)
    assert _discount_lines(invoice) == [-400] and invoice.subtotal_minor == 1_600


def test_discount_redeem_customer_wide_refuses_a_second_discount_instead_of_replacing_it(customer, team_sub, staff):
    # given: a discount on the whole account (staff attached it, no subscription)
    first = make_coupon(name="Partner")
    second = make_coupon(name="Other")
    discount_redeem(customer=customer, subscription=None, coupon_id=first.pk, actor=staff)
    # when / then: a second account-wide one is refused with a coded error, and nothing is written
    with pytest.raises(PromotionCodeNotApplicable, match=r"Your account already has a discount \(Partner\)") as raised:
        discount_redeem(customer=customer, subscription=None, coupon_id=second.pk, actor=staff)
    assert raised.value.code == "promotion_code_not_applicable"
    assert list(Discount.objects.values_list("coupon__name", flat=True)) == ["Partner"]
    second.refresh_from_db()
    assert second.times_redeemed == 0
    # and the subscription cannot stack one of its own on top either
    make_code(make_coupon(name="Launch"))
    with pytest.raises(PromotionCodeNotApplicable, match="do not combine"):
        discount_redeem(customer=customer, subscription=team_sub, promotion_code="LAUNCH20")
