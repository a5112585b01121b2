"""Health score formulas on hand-built facts; expected figures computed by hand in the comments."""

from hypothesis import given
from hypothesis import strategies as st

from billing.health import formulas as f


def test_seat_adoption_is_assigned_over_purchased():
    # 8 of 10 seats: 100 × 8 / 10 = 80
    assert f.seat_adoption(assigned=8, purchased=10) == 80
    # 2 of 3: 66.67 → 67 (half up)
    assert f.seat_adoption(assigned=2, purchased=3) == 67
    # more assigned than purchased (a grace period) caps at 100; no seats bought → no judgement
    assert f.seat_adoption(assigned=12, purchased=10) == 100
    assert f.seat_adoption(assigned=0, purchased=0) is None


def test_activity_is_share_of_members_active():
    # 3 of 8 members active: 37.5 → 38 (half up)
    assert f.activity(members=8, active_members=3) == 38
    assert f.activity(members=0, active_members=0) is None


def test_payment_health_penalties():
    # 100 − 25 × 1 overdue − 15 × 2 failed − 12 days past due = 100 − 25 − 30 − 12 = 33
    assert f.payment(overdue_invoices=1, failed_payments=2, days_past_due=12) == 33
    # floored at 0: 100 − 75 − 45 − 40 < 0
    assert f.payment(overdue_invoices=3, failed_payments=3, days_past_due=40) == 0
    assert f.payment(overdue_invoices=0, failed_payments=0, days_past_due=0) == 100


def test_enablement_and_friction_penalties():
    # 100 − 20 × 2 failed − 10 × 1 slow = 50
    assert f.enablement(failed_runs=2, slow_runs=1) == 50
    # 100 − 20 × 1 held − 15 × 2 credit notes − 10 × 1 note = 40
    assert f.friction(held_invoices=1, credit_notes=2, billing_notes=1) == 40


def test_effort_maps_mean_answer_to_0_100():
    # answers 7, 6, 5: mean 6 → (6 − 1) / 6 × 100 = 83.33 → 83
    assert f.effort(scores=[7, 6, 5]) == 83
    assert f.effort(scores=[1]) == 0
    assert f.effort(scores=[7]) == 100
    assert f.effort(scores=[]) is None


def test_combine_is_weighted_mean_over_components_with_facts():
    components = {
        "seat_adoption": 80,
        "activity": 38,
        "payment": 33,
        "enablement": 100,
        "friction": 40,
        "effort": None,  # no survey answers: drops out with its weight
    }
    # (80×25 + 38×20 + 33×25 + 100×10 + 40×10) / (25+20+25+10+10)
    # = (2000 + 760 + 825 + 1000 + 400) / 90 = 4985 / 90 = 55.39 → 55
    assert f.combine(components, f.DEFAULT_WEIGHTS).score == 55
    assert f.combine(dict.fromkeys(f.COMPONENTS), f.DEFAULT_WEIGHTS).score is None


def test_weights_problems_refuse_negative_all_zero_and_unknown():
    assert f.weights_problems(f.DEFAULT_WEIGHTS) == []
    assert f.weights_problems({**f.DEFAULT_WEIGHTS, "payment": -1})
    assert f.weights_problems(dict.fromkeys(f.COMPONENTS, 0))
    assert f.weights_problems({"payment": 1})


@given(
    components=st.fixed_dictionaries({k: st.one_of(st.none(), st.integers(0, 100)) for k in f.COMPONENTS}),
    weights=st.fixed_dictionaries({k: st.integers(0, 50) for k in f.COMPONENTS}),
)
def test_combine_stays_between_the_lowest_and_highest_weighted_component(components, weights):
    score = f.combine(components, weights).score
    used = [v for k, v in components.items() if v is not None and weights[k] > 0]
    if not used:
        assert score is None
    else:
        assert min(used) <= score <= max(used)


STAGE_BASE = {
    "tenure_days": 200,
    "live_subscriptions": 1,
    "ever_subscribed": True,
    "entitlements_not_active": 0,
    "seats_grew_90_days": False,
    "past_due": False,
    "score": 80,
    "at_risk_below": 50,
    "seat_adoption": 80,
}


def test_journey_stage_rules_in_order():
    assert f.journey_stage(**STAGE_BASE) == "established"
    assert f.journey_stage(**{**STAGE_BASE, "live_subscriptions": 0}) == "churned"
    assert f.journey_stage(**{**STAGE_BASE, "past_due": True}) == "at_risk"
    assert f.journey_stage(**{**STAGE_BASE, "score": 49}) == "at_risk"
    assert f.journey_stage(**{**STAGE_BASE, "score": 50}) == "established"
    assert f.journey_stage(**{**STAGE_BASE, "tenure_days": 29}) == "onboarding"
    assert f.journey_stage(**{**STAGE_BASE, "entitlements_not_active": 1}) == "onboarding"
    assert f.journey_stage(**{**STAGE_BASE, "seats_grew_90_days": True}) == "expanding"
    assert f.journey_stage(**{**STAGE_BASE, "seat_adoption": 40}) == "adopting"
    assert f.journey_stage(**{**STAGE_BASE, "tenure_days": 60}) == "adopting"


@given(tenure=st.integers(0, 3650), score=st.one_of(st.none(), st.integers(0, 100)), past_due=st.booleans())
def test_journey_stage_onboarding_exactly_in_the_first_30_days_unless_at_risk(tenure, score, past_due):
    stage = f.journey_stage(**{**STAGE_BASE, "tenure_days": tenure, "score": score, "past_due": past_due})
    at_risk = past_due or (score is not None and score < 50)
    assert stage in f.STAGES
    assert (stage == "at_risk") == at_risk
    if not at_risk:
        assert (stage == "onboarding") == (tenure < 30)


def test_package_growth_is_a_move_to_a_dearer_list_price_and_a_downgrade_is_not():
    from billing.health import formulas as f

    # Team: 49.00 flat with 5 seats included, 9.00 a seat above; Business: 99.00 flat, 10 included
    team = f.package_list_amount(flat_amount_minor=4900, seat_amount_minor=900, included_seats=5, seats=8)
    business = f.package_list_amount(flat_amount_minor=9900, seat_amount_minor=900, included_seats=10, seats=8)
    assert (team, business) == (4900 + 3 * 900, 9900)
    assert f.package_grew(from_amount=team, to_amount=business)  # upgrade
    assert not f.package_grew(from_amount=business, to_amount=team)  # downgrade
    assert not f.package_grew(from_amount=team, to_amount=team)  # sideways
    assert not f.package_grew(from_amount=None, to_amount=business)  # unknown price
    common = {
        "tenure_days": 200,
        "live_subscriptions": 1,
        "ever_subscribed": True,
        "entitlements_not_active": 0,
        "seats_grew_90_days": False,
        "past_due": False,
        "score": 80,
        "at_risk_below": 50,
        "seat_adoption": 90,
    }
    assert f.journey_stage(**common, package_grew_90_days=True) == "expanding"
    assert f.journey_stage(**common, package_grew_90_days=False) == "established"


def test_adoption_trend_is_named_in_the_explanation_when_it_fell_notably():
    from billing.health import formulas as f
    from billing.services.health import _trend_phrase

    assert f.trend(now=50, then=80) == -30
    assert f.trend(now=50, then=None) is None
    facts = {
        "seat_adoption_30_days_ago": 55,
        "seat_adoption_90_days_ago": 80,
        "seat_adoption_trend_30_days": -5,
        "seat_adoption_trend_90_days": -30,
        "activity_30_days_ago": 60,
        "activity_90_days_ago": 50,
        "activity_trend_30_days": -9,  # under the 10 points that count as notable
        "activity_trend_90_days": 1,
    }
    assert _trend_phrase(facts, "seat_adoption") == "seat adoption fell from 80 % to 50 % in 90 days"
    assert _trend_phrase(facts, "activity") is None
