"""The health score's formulas: each component maps facts to 0–100 (or None when there are no facts to judge).

Pure functions over plain numbers, so hand-computed tests pin every figure (tests/billing/test_health_formulas.py)
and the same code scores one customer or ten thousand. Definitions: docs/metrics.md, "Customer health score".
Arithmetic is Decimal rounded once, half up, to a whole point.
"""

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

COMPONENTS = ("seat_adoption", "activity", "payment", "enablement", "friction", "effort")
DEFAULT_WEIGHTS = {
    "seat_adoption": 25,
    "activity": 20,
    "payment": 25,
    "enablement": 10,
    "friction": 10,
    "effort": 10,
}
SLOW_RUN_MS = 10 * 60 * 1000  # a provisioning run over 10 minutes counts as slow


def _points(value: Decimal) -> int:
    return int(max(Decimal(0), min(Decimal(100), value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def seat_adoption(*, assigned: int, purchased: int) -> int | None:
    """100 × assigned ÷ purchased (capped at 100); None without purchased seats."""
    if purchased <= 0:
        return None
    return _points(Decimal(100) * assigned / purchased)


def activity(*, members: int, active_members: int) -> int | None:
    """100 × members active (signed in or reported by the product) in the last 30 days ÷ members."""
    if members <= 0:
        return None
    return _points(Decimal(100) * active_members / members)


def payment(*, overdue_invoices: int, failed_payments: int, days_past_due: int) -> int:
    """100 − 25 per overdue invoice − 15 per failed payment (30 days) − 1 per day the oldest overdue is past due."""
    return _points(Decimal(100 - 25 * overdue_invoices - 15 * failed_payments - max(0, days_past_due)))


def enablement(*, failed_runs: int, slow_runs: int) -> int:
    """100 − 20 per failed provisioning run − 10 per slow run (over 10 minutes) in the last 30 days."""
    return _points(Decimal(100 - 20 * failed_runs - 10 * slow_runs))


def friction(*, held_invoices: int, credit_notes: int, billing_notes: int) -> int:
    """100 − 20 per held invoice − 15 per credit note − 10 per billing-related staff note, in the last 90 days."""
    return _points(Decimal(100 - 20 * held_invoices - 15 * credit_notes - 10 * billing_notes))


def effort(*, scores: list[int]) -> int | None:
    """The mean "How easy was that?" answer (1–7, 7 = very easy) of the last 90 days on 0–100: (mean − 1) ÷ 6 × 100."""
    if not scores:
        return None
    mean = Decimal(sum(scores)) / len(scores)
    return _points((mean - 1) / 6 * 100)


def package_list_amount(*, flat_amount_minor: int, seat_amount_minor: int, included_seats: int, seats: int) -> int:
    """A package's list price for one period at `seats` (flat fee plus seats above the included ones), the measure
    the package-change service ranks packages by ("compare what a period costs"; subscriptions/services/changes)."""
    return flat_amount_minor + max(0, seats - included_seats) * seat_amount_minor


def package_grew(*, from_amount: int | None, to_amount: int | None) -> bool:
    """A package move is growth when the new package's list price is higher than the old one's (same currency,
    interval and seats); a downgrade, a sideways move or an unknown price is not."""
    return from_amount is not None and to_amount is not None and to_amount > from_amount


TREND_NOTABLE_POINTS = 10  # a component that fell this much (or more) over a trend window is named in the explanation
TREND_WINDOWS = (30, 90)


def trend(*, now: int | None, then: int | None) -> int | None:
    """Points gained (positive) or lost over a window: now − then; None unless both are known."""
    if now is None or then is None:
        return None
    return now - then


def weights_problems(weights: dict[str, int]) -> list[str]:
    """Why a weight set is refused: unknown or missing components, negative weights, or all zero."""
    problems = []
    if set(weights) != set(COMPONENTS):
        problems.append(f"Give a weight for exactly these components: {', '.join(COMPONENTS)}.")
    if any(int(w) < 0 for w in weights.values()):
        problems.append("Weights cannot be negative.")
    if weights and all(int(w) == 0 for w in weights.values()):
        problems.append("At least one weight must be above zero.")
    return problems


@dataclass(frozen=True)
class Score:
    score: int | None
    components: dict[str, int | None] = field(default_factory=dict)


def combine(components: dict[str, int | None], weights: dict[str, int]) -> Score:
    """The weighted mean of the components that have facts (None ones drop out, their weight with them)."""
    present = {k: v for k, v in components.items() if v is not None and weights.get(k, 0) > 0}
    total_weight = sum(weights[k] for k in present)
    if total_weight == 0:
        return Score(score=None, components=components)
    weighted = sum(Decimal(v) * weights[k] for k, v in present.items()) / total_weight
    return Score(score=_points(weighted), components=components)


STAGES = ("onboarding", "adopting", "established", "expanding", "at_risk", "churned")
ONBOARDING_DAYS = 30
ESTABLISHED_AFTER_DAYS = 90
ADOPTED_SEAT_SHARE = 60  # seat adoption from which a customer counts as adopted


def journey_stage(
    *,
    tenure_days: int,
    live_subscriptions: int,
    ever_subscribed: bool,
    entitlements_not_active: int,
    seats_grew_90_days: bool,
    package_grew_90_days: bool = False,
    past_due: bool,
    score: int | None,
    at_risk_below: int,
    seat_adoption: int | None,
) -> str:
    """The first rule that holds, in this order: churned (no live subscription left, had one); at risk (past due, or
    the score below the threshold); onboarding (first 30 days, or entitlements not all active); expanding (seats or
    the package grew in 90 days; a downgrade does not count); established (past 90 days and seat adoption ≥ 60);
    otherwise adopting."""
    if live_subscriptions == 0 and ever_subscribed:
        return "churned"
    if past_due or (score is not None and score < at_risk_below):
        return "at_risk"
    if tenure_days < ONBOARDING_DAYS or entitlements_not_active > 0:
        return "onboarding"
    if seats_grew_90_days or package_grew_90_days:
        return "expanding"
    if tenure_days >= ESTABLISHED_AFTER_DAYS and (seat_adoption is None or seat_adoption >= ADOPTED_SEAT_SHARE):
        return "established"
    return "adopting"
