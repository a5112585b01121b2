"""Customer health in the simulated year (issue 20).

`CustomerHealth`, an extension of the year (year.py `hook`): owners sign in to the portal on some days (what Django's
`update_last_login` records on a sign-in, for the day's owners in one update; the activity component reads it), the
nightly recomputation runs at 01:30 through `customer_health_recompute`, as beat runs it, and once more at the end.
The report then shows the score distribution, the customers per journey stage and the ten most at-risk customers
with their explanations; and the revenue metrics of every complete simulated month (`revenue_months_update`, what
the nightly task stores, then `metrics_summary`, what the staff metrics page reads): MRR, ARR, ARPA, logo churn,
NRR/GRR once twelve months exist, and the MRR ↔ invoice reconciliation of the last month by reason.

`violations` checks that the scores are plausible against the year's facts, read from the database here (not from
the snapshot's own facts), per docs/metrics.md:
- every customer has a current snapshot, scored 0–100, whose stage is the last recorded stage change;
- a customer with an open invoice past its due date scores below 100 on payment and is "at risk" (or churned);
  one with no overdue invoice and no failed payment in 30 days scores 100 on payment;
- customers with overdue invoices score lower on payment, on average, than those without;
- a customer with no live subscription left is "churned";
- each month's stored MRR is the previous month's plus its movements (new, expansion, contraction, churn,
  reactivation), and equals the sum of the customers' MRR from the subscription facts at the month's end; every
  MRR ↔ invoice difference of the last month has a reason the records show (none "unexplained").
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from statistics import mean

from django.utils import timezone

from billing.models import CustomerHealthSnapshot, Invoice, InvoiceStatus, JourneyStageChange, Payment, RevenueMonth
from billing.models.payments import PaymentStatus
from billing.services import revenue_metrics
from portal.backoffice_health import newest_snapshots
from portal.services.health import customer_health_recompute
from portal.simulation.violations import Violation
from subscriptions.models import LIVE_STATUSES, Customer, Subscription, User

BUCKETS = ((0, 20), (20, 40), (40, 60), (60, 80), (80, 101))
SIGN_IN_DAILY_RATE = 0.25  # per owner per day (an owner who signs in weekly or more counts as active)
ENGAGED_SHARE = 0.7  # owners who use the portal at all


def _current() -> dict[int, CustomerHealthSnapshot]:
    """Each customer's newest snapshot, as the staff health page reads them (a year holds ~365 per customer)."""
    return {snapshot.customer_id: snapshot for snapshot in newest_snapshots()}


class CustomerHealth:
    def __init__(self, seed: int):
        self.rng = random.Random(f"health-{seed}")
        self.runs = 0
        self.engaged: set[int] = set()  # owners who sign in now and then
        self.revenue_months: list = []  # the complete simulated months, computed at the end

    def schedule(self, sim, day0) -> None:
        sim._every(day0 + timedelta(hours=1, minutes=30), timedelta(days=1), self.nightly)
        sim._every(day0 + timedelta(hours=9), timedelta(days=1), lambda: self.sign_ins(sim))

    def after_signup(self, sim, c, result) -> None:
        if self.rng.random() < ENGAGED_SHARE:
            self.engaged.add(result.user.pk)

    def sign_ins(self, sim) -> None:
        # What a sign-in records (Django's update_last_login: last_login = now), for the day's owners in one update.
        signed_in = [pk for pk in sorted(self.engaged) if self.rng.random() < SIGN_IN_DAILY_RATE]
        User.objects.filter(pk__in=signed_in).update(last_login=timezone.now())

    def nightly(self) -> None:
        customer_health_recompute()
        self.runs += 1

    def finish(self, sim, traveller) -> None:
        self.nightly()
        # the complete months of the run, stored as the nightly revenue task stores them (each on its own)
        month = revenue_metrics.month_first(sim.start.date())
        while revenue_metrics.month_add(month, 1) <= sim.now.date():
            revenue_metrics.revenue_months_update(month)
            self.revenue_months.append(month)
            month = revenue_metrics.month_add(month, 1)

    def _summaries(self) -> list:
        if not self.revenue_months:
            return []
        currencies = RevenueMonth.objects.order_by("currency").values_list("currency", flat=True).distinct()
        return [
            revenue_metrics.metrics_summary(
                end_month=self.revenue_months[-1], currency=currency, months=len(self.revenue_months)
            )
            for currency in currencies
        ]

    def revenue_violations(self) -> list[Violation]:
        found = []
        for summary in self._summaries():
            previous_mrr = 0  # the run starts on an empty database
            for m in summary.months:
                subject = f"revenue {summary.currency} {m.month:%Y-%m}"
                if m.mrr_minor != previous_mrr + m.net_movement_minor:
                    found.append(
                        Violation(
                            "revenue",
                            subject,
                            f"MRR {m.mrr_minor} ≠ previous {previous_mrr} + movements {m.net_movement_minor}",
                        )
                    )
                last_day = revenue_metrics.month_add(m.month, 1) - timedelta(days=1)
                facts = sum(
                    row.mrr_minor
                    for row in revenue_metrics.mrr_by_customer(last_day).values()
                    if row.currency == summary.currency
                )
                if facts != m.mrr_minor:
                    found.append(Violation("revenue", subject, f"stored MRR {m.mrr_minor} ≠ facts {facts}"))
                previous_mrr = m.mrr_minor
            for difference in revenue_metrics.mrr_reconciliation(summary.end_month):
                if difference.currency == summary.currency and "unexplained" in difference.reasons:
                    found.append(
                        Violation(
                            "revenue",
                            f"customer {difference.customer_id}",
                            f"MRR {difference.fact_mrr_minor} vs invoiced {difference.invoiced_mrr_minor} at "
                            f"{summary.end_month:%Y-%m}'s end, no record explains it",
                        )
                    )
        return found

    def violations(self, sim) -> list[Violation]:
        found = []
        current = _current()
        today = sim.now.date()
        overdue = set(
            Invoice.objects.filter(status=InvoiceStatus.OPEN, due_on__lt=today).values_list("customer_id", flat=True)
        )
        failed = set(
            Payment.objects.filter(
                status=PaymentStatus.FAILED, created_at__gte=sim.now - timedelta(days=30)
            ).values_list("invoice__customer_id", flat=True)
        )
        live = set(Subscription.objects.filter(status__in=LIVE_STATUSES).values_list("customer_id", flat=True))
        last_stage = {}
        for customer_id, stage in JourneyStageChange.objects.order_by("changed_at", "id").values_list(
            "customer_id", "to_stage"
        ):
            last_stage[customer_id] = stage
        for customer_id, name in Customer.objects.values_list("pk", "name"):
            subject = f"customer {name}"
            snapshot = current.get(customer_id)
            if snapshot is None:
                found.append(Violation("health", subject, "no health score"))
                continue
            payment = snapshot.components.get("payment")
            if snapshot.score is not None and not 0 <= snapshot.score <= 100:
                found.append(Violation("health", subject, f"score {snapshot.score} outside 0–100"))
            if last_stage.get(customer_id) != snapshot.stage:
                found.append(
                    Violation(
                        "health", subject, f"stage {snapshot.stage}, last change to {last_stage.get(customer_id)}"
                    )
                )
            if customer_id not in live:
                if snapshot.stage != "churned":
                    found.append(Violation("health", subject, f"no live subscription but stage {snapshot.stage}"))
                continue
            if customer_id in overdue:
                if payment is None or payment >= 100:
                    found.append(Violation("health", subject, f"an invoice is overdue but payment scores {payment}"))
                if snapshot.stage != "at_risk":
                    found.append(Violation("health", subject, f"an invoice is overdue but stage {snapshot.stage}"))
            elif customer_id not in failed and payment != 100:
                found.append(Violation("health", subject, f"nothing overdue or failed, but payment scores {payment}"))
        late = [current[c].components.get("payment") for c in overdue & live if c in current]
        on_time = [s.components.get("payment") for c, s in current.items() if c in live and c not in overdue]
        if late and on_time and not mean(late) < mean(on_time):
            found.append(
                Violation(
                    "health", "payment component", f"overdue customers {mean(late):.1f} ≥ others {mean(on_time):.1f}"
                )
            )
        return found + self.revenue_violations()

    def figures(self, sim) -> dict:
        current = _current()
        names = dict(Customer.objects.values_list("pk", "name"))
        distribution = Counter()
        for snapshot in current.values():
            if snapshot.score is None:
                distribution["no score"] += 1
                continue
            low, high = next(b for b in BUCKETS if b[0] <= snapshot.score < b[1])
            distribution[f"{low}–{min(high, 100)}"] += 1
        at_risk = sorted(
            (s for s in current.values() if s.stage == "at_risk"),
            key=lambda s: (s.score if s.score is not None else 101, s.customer_id),
        )[:10]
        return {
            "health_runs": self.runs,
            "health_distribution": {
                f"{low}–{min(high, 100)}": distribution[f"{low}–{min(high, 100)}"] for low, high in BUCKETS
            }
            | ({"no score": distribution["no score"]} if distribution["no score"] else {}),
            "health_stages": dict(Counter(s.stage for s in current.values()).most_common()),
            "health_at_risk": [
                {"customer": names.get(s.customer_id, s.customer_id), "score": s.score, "why": s.explanation}
                for s in at_risk
            ],
            "health_stage_changes": JourneyStageChange.objects.count(),
            "revenue": [_revenue_figures(summary) for summary in self._summaries()],
        }


def _revenue_figures(summary) -> dict:
    last = summary.months[-1]
    reasons = Counter(
        reason
        for difference in revenue_metrics.mrr_reconciliation(summary.end_month)
        if difference.currency == summary.currency
        for reason in difference.reasons
    )
    return {
        "currency": summary.currency,
        "mrr_by_month": {f"{m.month:%Y-%m}": m.mrr_minor for m in summary.months},
        "mrr_minor": summary.mrr_minor,
        "arr_minor": summary.arr_minor,
        "arpa_minor": summary.arpa_minor,
        "customers": last.customers_end,
        "logo_churn": str(summary.logo_churn) if summary.logo_churn is not None else None,
        "nrr": str(summary.nrr) if summary.nrr is not None else None,
        "grr": str(summary.grr) if summary.grr is not None else None,
        "reconciliation_reasons": dict(reasons.most_common()),
    }
