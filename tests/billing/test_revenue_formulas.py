"""Properties of the pure revenue formulas (billing/metrics/revenue.py)."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing.metrics import revenue as f

amounts = st.integers(min_value=0, max_value=10**9)
mrr_maps = st.dictionaries(st.integers(min_value=1, max_value=40), amounts, max_size=25)


def test_annual_amounts_are_divided_by_twelve_rounded_half_up():
    assert f.monthly_minor(100_000, "year") == 8_333  # 83.333…
    assert f.monthly_minor(100_006, "year") == 8_334  # 83.3383…
    assert f.monthly_minor(18, "year") == 2  # 1.5 → 2 (half up)
    assert f.monthly_minor(15_000, "month") == 15_000


@given(amounts)
def test_annual_normalisation_is_within_half_a_minor_unit(amount):
    monthly = f.monthly_minor(amount, "year")
    assert abs(Decimal(monthly * 12 - amount)) <= 6  # 12 × (at most half a unit)
    assert f.monthly_minor(amount * 12, "year") == amount


@given(mrr_maps, mrr_maps, st.sets(st.integers(min_value=1, max_value=40)))
def test_movements_add_up_to_the_change_in_mrr(before, after, seen):
    moves = f.classify_movements(before, after, seen_before=seen)
    assert moves.net_minor == sum(after.values()) - sum(before.values())
    assert moves.new_minor >= 0 and moves.expansion_minor >= 0 and moves.reactivation_minor >= 0
    assert moves.contraction_minor <= 0 and moves.churned_minor <= 0
    paying_before = {c for c, v in before.items() if v > 0}
    paying_after = {c for c, v in after.items() if v > 0}
    assert moves.churned_customers == len(paying_before - paying_after)
    assert moves.new_customers + moves.reactivated_customers == len(paying_after - paying_before)


@given(mrr_maps, mrr_maps)
def test_gross_retention_never_exceeds_net_nor_one(start, end):
    base = f.retention_base(start, end)
    if base.start_minor:
        assert f.grr(base) <= f.nrr(base)
        assert f.grr(base) <= 1
    else:
        assert f.nrr(base) is None and f.grr(base) is None


def test_lifetime_value_needs_churn_and_says_why_not():
    no_churn = f.lifetime_value(
        arpa=10_000, gross_margin=Decimal("0.8"), churned_customers=0, customer_months=50, window_months=12
    )
    assert no_churn.ltv_minor is None and any("unbounded" in line for line in no_churn.assumptions)
    value = f.lifetime_value(
        arpa=10_000, gross_margin=Decimal("0.8"), churned_customers=2, customer_months=100, window_months=12
    )
    assert value.ltv_minor == 400_000  # 10000 × 0.8 ÷ (2 / 100)


def test_percentiles_use_the_nearest_rank():
    assert f.percentile_seconds([], 50) is None
    assert f.percentile_seconds([30, 10, 20], 50) == 20
    assert f.percentile_seconds(list(range(1, 101)), 95) == 95
