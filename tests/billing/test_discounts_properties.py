"""Discount properties (hypothesis): over random prices, seat counts, proration factors, tax rates and coupon shapes,
totals are never negative, tax is never computed on an undiscounted amount, and the discount lines add up to the
discount — the rules of docs/billing-rules.md, "Discounts". (No too_slow health check: input generation is slow on a
loaded machine, which says nothing about the code.)"""

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.models import TaxRate
from billing.services.discounts import ChargeLine, DiscountTerms, discount_lines_compute
from billing.services.tax import TaxContext, tax_amount, tax_compute
from subscriptions.services.proration import prorate

SKUS = ["PLAT-BASE-M", "SEAT-STD-M", "SUP-PREM-M", ""]
CATEGORIES = ["saas", "services"]


@st.composite
def coupon_terms(draw):
    kind = draw(st.sampled_from(["percent", "fixed"]))
    applies_to_all = draw(st.booleans())
    return DiscountTerms(
        name="Offer",
        kind=kind,
        percent_off=Decimal(draw(st.integers(1, 10_000))) / 100 if kind == "percent" else None,
        amount_off_minor=draw(st.integers(1, 1_000_000)) if kind == "fixed" else 0,
        applies_to_all=applies_to_all,
        sku_codes=frozenset(draw(st.sets(st.sampled_from(SKUS[:3]), max_size=3))),
    )


@st.composite
def period_lines(draw):
    """A period invoice: flat fee, billed seats × seat price, add-ons; optionally prorated by one factor."""
    lines = [
        ChargeLine(draw(st.integers(0, 500_000)), 0, SKUS[0], "saas"),
    ]
    seats, seat_price = draw(st.integers(0, 500)), draw(st.integers(0, 50_000))
    lines.append(ChargeLine(seats * seat_price, 0, SKUS[1], "saas"))
    for _ in range(draw(st.integers(0, 2))):
        lines.append(ChargeLine(draw(st.integers(0, 100_000)), 0, SKUS[2], "services"))
    return [ChargeLine(line.amount_minor, line.amount_minor, line.sku_code, line.tax_category) for line in lines]


def _rates(draw_rates) -> list[TaxRate]:
    return [
        TaxRate(pk=index + 1, country="US", name=f"Tax {index}", rate=rate, tax_categories=[category])
        for index, (rate, category) in enumerate(draw_rates)
    ]


rates_strategy = st.lists(
    st.tuples(st.decimals(min_value=0, max_value=30, places=4), st.sampled_from(CATEGORIES)), max_size=3
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=period_lines(), terms=coupon_terms(), rates=rates_strategy)
def test_period_invoice_totals_are_never_negative_and_tax_is_on_the_discounted_amounts(lines, terms, rates):
    discount_lines = discount_lines_compute(lines=lines, terms=terms)
    per_line = {index: line.amount_minor for index, line in enumerate(lines)}
    for discount_line in discount_lines:
        per_line[discount_line.for_index] += discount_line.amount_minor
    # never below zero, line by line
    assert all(amount >= 0 for amount in per_line.values())
    context = TaxContext(country="US", region="", tax_date=date(2026, 11, 1), rates=_rates(rates))
    result = tax_compute(
        lines=[(line.amount_minor, line.tax_category) for line in lines]
        + [(line.amount_minor, line.tax_category) for line in discount_lines],
        context=context,
    )
    assert result.subtotal_minor >= 0 and result.total_minor >= 0
    # tax per rate is the rate of the DISCOUNTED amount of its category, rounded once
    for entry in result.tax_lines:
        category = next(r for r in context.rates if r.pk == entry.tax_rate_id).tax_categories[0]
        net = sum(per_line[i] for i, line in enumerate(lines) if line.tax_category == category)
        assert entry.taxable_minor == net
        assert entry.tax_minor == tax_amount(taxable_minor=net, rate_percent=entry.rate)
    # the discount is the sum of its lines: a percentage within half a minor unit per line of the exact value;
    # a fixed amount exactly min(amount, eligible amount)
    total_discount = -sum(line.amount_minor for line in discount_lines)
    eligible = [line for line in lines if terms.applies_to(line.sku_code)]
    if terms.kind == "fixed":
        assert total_discount == min(terms.amount_off_minor, sum(line.amount_minor for line in eligible))
    else:
        exact = sum(Fraction(line.amount_minor) * Fraction(terms.percent_off) / 100 for line in eligible)
        assert abs(total_discount - exact) <= Fraction(len(eligible), 2)
        for line in discount_lines:
            source = lines[line.for_index].amount_minor
            assert -line.amount_minor == int(
                (Decimal(source) * terms.percent_off / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP)
            )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    terms=coupon_terms(),
    flat=st.integers(1, 500_000),
    seat_price=st.integers(1, 50_000),
    seats=st.integers(1, 200),
    added=st.integers(1, 200),
    days_left=st.integers(0, 30),
)
def test_a_prorated_seat_increase_never_goes_negative_nor_costs_more_than_undiscounted(
    terms, flat, seat_price, seats, added, days_left
):
    factor = Decimal(days_left) / Decimal(30)
    full = added * seat_price
    line = ChargeLine(prorate(full, factor), full, SKUS[1], "saas")
    eligible_before = sum(
        amount for amount, sku in ((flat, SKUS[0]), (seats * seat_price, SKUS[1])) if terms.applies_to(sku)
    )
    discount_lines = discount_lines_compute(lines=[line], terms=terms, eligible_before_minor=eligible_before)
    charged = line.amount_minor + sum(d.amount_minor for d in discount_lines)
    assert 0 <= charged <= line.amount_minor
    if terms.kind == "fixed" and eligible_before >= terms.amount_off_minor:
        # the period's fixed amount is used up already: the change is the plain price difference
        assert charged == line.amount_minor


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms=coupon_terms(), old=st.integers(1, 500_000), new=st.integers(1, 500_000), days_left=st.integers(0, 30))
def test_a_package_change_credit_and_charge_never_flip_sign(terms, old, new, days_left):
    factor = Decimal(days_left) / Decimal(30)
    lines = [
        ChargeLine(-prorate(old, factor), -old, SKUS[0], "saas"),
        ChargeLine(prorate(new, factor), new, SKUS[0], "saas"),
    ]
    discount_lines = discount_lines_compute(lines=lines, terms=terms, eligible_before_minor=old)
    net = [line.amount_minor for line in lines]
    for discount_line in discount_lines:
        net[discount_line.for_index] += discount_line.amount_minor
    assert net[0] <= 0 <= net[1]
