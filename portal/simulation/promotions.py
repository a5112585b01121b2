"""Promotion codes and expiring discounts in the simulated year (issue 22).

`Promotions`, an extension of the year (year.py `hook`): staff define the coupons and codes below before the year
starts; some customers enter a code at sign-up (a refused code: they sign up without it, as the page lets them), some
enter one with a seat increase (previewed with the code, then applied with it; a refusal changes nothing), and
billing staff end some "forever" discounts (they stop at the next period boundary). Once and repeating discounts
expire after their periods by themselves.

`discounts_check`, an invariant (called by invariants.check_all), written from docs/billing-rules.md "Discounts",
not by calling the computation:
- every discount line follows the line it discounts, and its discount was active when that line's charge began — the
  period's start for a period's lines, the change instant for a change's lines (the one coverage rule; an expired
  discount never applies); every period invoice whose start a discount was active at carries its discount lines;
- a percentage line is −(percent × line amount) rounded half-up once per line; a fixed amount takes, line by line,
  the change of min(amount, eligible amount so far), so a line never goes below zero and the excess is lost;
- a mid-period change's discount is of the same sign rule and never exceeds the line;
- discounts never stack: no two discounts of one subscription overlap in time, and no line carries two;
- coupon and code counters equal their redemptions and never exceed their limits;
- a credit note never credits a line beyond what was charged for it (its amount plus its discount lines).
`Promotions.violations` adds what only the run saw: a refused code wrote nothing, and a seat increase with a code
billed at once is invoiced exactly as previewed — subtotal, tax, total and each discount line, to the minor unit
(the billed preview's figures: the subscriptions preview's `amount_due_now_minor` is before discount and tax).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from billing.exceptions import PromotionCodeError
from billing.models import (
    Coupon,
    CouponAmount,
    CouponDuration,
    CouponKind,
    CreditNoteLine,
    Discount,
    InvoiceKind,
    InvoiceLine,
    LineKind,
    PromotionCode,
)
from billing.services.changes import change_apply, change_preview
from billing.services.discounts import discount_end
from portal.simulation.violations import Violation
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import LIVE_STATUSES, Package, Subscription, SubscriptionChange, User

SIGNUP_CODE_RATE = 0.15  # of sign-ups: a code is entered
SIGNUP_CODE_RATE_EU_BUSINESS = 0.5  # German businesses (e-invoices: their allowances are checked too)
CHANGE_CODE_DAILY_RATE = 0.003  # per customer per day: a seat increase with a code
STAFF_END_FOREVER_RATE = 0.3  # of forever discounts: ended by billing staff 20–50 days after redemption
# (code, weight at sign-up, weight on a change)
CODES = [
    ("LAUNCH20", 4, 1),
    ("welcome15", 3, 1),  # entered in lower case: codes match case-insensitively
    ("LOYAL5", 2, 3),
    ("TEAM10", 2, 2),
    ("SPRING25", 1, 1),  # expired before the year starts: always refused
    ("NOSUCHCODE", 1, 1),  # unknown: always refused
]


def half_up(value: Decimal) -> int:
    """Half away from zero, to a whole minor unit (the documented per-line rounding)."""
    sign = -1 if value < 0 else 1
    return sign * int(abs(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _pick(rng: random.Random, column: int) -> str:
    codes = [row[0] for row in CODES]
    return rng.choices(codes, weights=[row[column] for row in CODES])[0]


class Promotions:
    """Extension of the year (see the module docstring)."""

    def __init__(self, seed: int):
        self.rng = random.Random(f"promotions-{seed}")
        self.redeemed: Counter = Counter()
        self.refused: Counter = Counter()
        self.ended_by_staff = 0
        self.found: list[Violation] = []
        self.preview_differences: list[str] = []
        self.previews_compared = 0

    # -- staff define the offers before the year -------------------------------------------------------------------
    def schedule(self, sim, day0) -> None:
        launch = Coupon.objects.create(
            name="Launch 20", kind=CouponKind.PERCENT, percent_off=Decimal(20), duration=CouponDuration.REPEATING,
            duration_periods=3,
        )  # fmt: skip
        PromotionCode.objects.create(coupon=launch, code="LAUNCH20", expires_at=day0 + timedelta(days=40))
        welcome = Coupon.objects.create(name="Welcome 15", kind=CouponKind.FIXED, duration=CouponDuration.ONCE)
        for currency in ("USD", "EUR"):
            CouponAmount.objects.create(coupon=welcome, currency=currency, amount_minor=1500)
        PromotionCode.objects.create(coupon=welcome, code="WELCOME15", first_time_only=True)
        loyal = Coupon.objects.create(
            name="Loyal 5", kind=CouponKind.PERCENT, percent_off=Decimal("5"), duration=CouponDuration.FOREVER,
            min_seats=5,
        )  # fmt: skip
        PromotionCode.objects.create(coupon=loyal, code="LOYAL5", max_redemptions=40)
        team = Coupon.objects.create(
            name="Team 10", kind=CouponKind.PERCENT, percent_off=Decimal("12.5"), duration=CouponDuration.REPEATING,
            duration_periods=2, applies_to_all=False,
        )  # fmt: skip
        team.packages.set(Package.objects.filter(slug="team"))
        PromotionCode.objects.create(coupon=team, code="TEAM10")
        spring = Coupon.objects.create(
            name="Spring 25", kind=CouponKind.PERCENT, percent_off=Decimal(25), duration=CouponDuration.ONCE
        )
        PromotionCode.objects.create(coupon=spring, code="SPRING25", expires_at=day0 - timedelta(days=1))
        sim.at(day0 + timedelta(hours=4, minutes=30), self._daily, sim)

    def _daily(self, sim) -> None:
        for c in sim.customers:
            if c.customer_id is not None and self.rng.random() < CHANGE_CODE_DAILY_RATE:
                sim.at(sim.now + timedelta(minutes=self.rng.randrange(18 * 60)), self._seats_with_code, sim, c)
        if sim.now + timedelta(days=1) < sim.end:
            sim.at(sim.now + timedelta(days=1), self._daily, sim)

    # -- customers -------------------------------------------------------------------------------------------------
    def signup_create(self, sim, c, function):
        rate = SIGNUP_CODE_RATE_EU_BUSINESS if c.kind == "eu_vat" else SIGNUP_CODE_RATE
        if self.rng.random() >= rate:
            return function
        code = _pick(self.rng, 1)

        def with_code(**kwargs):
            try:
                result = function(**kwargs, promotion_code=code)
            except PromotionCodeError as refusal:
                self.refused[f"sign-up {code.upper()}: {refusal.code}"] += 1
                if User.objects.filter(email__iexact=kwargs["email"]).exists():
                    self.found.append(Violation("discounts", c.email, f"refused code {code} still created the user"))
                return function(**kwargs)  # the customer signs up without the code
            self._redeemed(sim, c, result.subscription, code)
            return result

        return with_code

    def _redeemed(self, sim, c, subscription, code: str) -> None:
        self.redeemed[code.upper()] += 1
        discount = Discount.objects.filter(subscription=subscription).select_related("coupon").order_by("-id").first()
        if discount is None:
            self.found.append(Violation("discounts", f"subscription {subscription.pk}", f"code {code} not redeemed"))
        elif discount.coupon.duration == CouponDuration.FOREVER and self.rng.random() < STAFF_END_FOREVER_RATE:
            sim.at(sim.now + timedelta(days=self.rng.randint(20, 50)), self._staff_end, sim, discount.pk)

    def _seats_with_code(self, sim, c) -> None:
        subscription = Subscription.objects.filter(pk=c.subscription_id).first()
        if subscription is None or subscription.status not in LIVE_STATUSES:
            return
        code = _pick(self.rng, 2)
        seats = subscription.seats + self.rng.randint(1, 4)
        before = Discount.objects.filter(customer_id=c.customer_id).count()
        sim._dirty = True
        try:
            preview = change_preview(subscription_id=subscription.pk, kind="seats", seats=seats, promotion_code=code)
            billed = change_apply(
                subscription_id=subscription.pk,
                kind="seats",
                seats=seats,
                promotion_code=code,
                expected_version=preview.version,
                expected_amount_due_minor=preview.preview.amount_due_now_minor,
                actor=User.objects.get(pk=c.owner_id),
                idempotency_key=f"sim-{c.index}-promo-{sim.now.timestamp()}",
            )
        except PromotionCodeError as refusal:
            self.refused[f"change {code.upper()}: {refusal.code}"] += 1
            if Discount.objects.filter(customer_id=c.customer_id).count() != before:
                self.found.append(Violation("discounts", f"subscription {subscription.pk}", f"refused {code} wrote"))
            if Subscription.objects.get(pk=subscription.pk).seats != subscription.seats:
                self.found.append(
                    Violation("discounts", f"subscription {subscription.pk}", f"refused {code} changed the seats")
                )
            return
        except SubscriptionError as refusal:  # the change itself refused, as a customer would see
            self.refused[f"change: {type(refusal).__name__}"] += 1
            return
        self._redeemed(sim, c, subscription, code)
        invoice = getattr(billed, "invoice", None)
        if invoice is None:
            return
        # A change's invoice bills the change's lines only: it must be the billed preview, to the minor unit.
        self.previews_compared += 1
        want = (preview.subtotal_minor, preview.tax_minor, preview.total_minor)
        want_discounts = [line.amount_minor for line in preview.discount_lines]
        got = (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor)
        got_discounts = [line.amount_minor for line in invoice.lines.all() if line.kind == LineKind.DISCOUNT]
        if got != want or got_discounts != want_discounts:
            difference = (
                f"{invoice.number or invoice.pk} {code}: preview subtotal/tax/total {want} discounts {want_discounts}, "
                f"invoice {got} discounts {got_discounts}"
            )
            self.preview_differences.append(difference)
            self.found.append(Violation("discounts", f"subscription {subscription.pk}", difference))

    def _staff_end(self, sim, discount_id: int) -> None:
        discount_end(discount_id=discount_id, actor=sim.clerk)
        sim._dirty = True
        self.ended_by_staff += 1

    # -- the end ---------------------------------------------------------------------------------------------------
    def violations(self, sim) -> list[Violation]:
        return list(self.found)

    def figures(self, sim) -> dict:
        return {
            "promotion_codes_redeemed": dict(self.redeemed.most_common()),
            "promotion_codes_refused": dict(self.refused.most_common()),
            "discounts_ended_by_staff": self.ended_by_staff,
            "promotion_preview_differences": self.preview_differences,
            "promotion_previews_compared": self.previews_compared,
        }


# -- the invariant -----------------------------------------------------------------------------------------------------
def _covers(discount: Discount, start) -> bool:
    """The one coverage rule: active at the instant the line's charge begins."""
    return discount.starts_at <= start and (discount.ends_at is None or start < discount.ends_at)


def _sku_codes(coupon: Coupon) -> set[str]:
    return {component.sku.code for package in coupon.packages.all() for component in package.components.all()}


def _applies(coupon: Coupon, sku_code: str, skus: dict) -> bool:
    return coupon.applies_to_all or (bool(sku_code) and sku_code in skus[coupon.pk])


def _own_lines(invoice, lines) -> list:
    """A period invoice's own lines (the plan, seats, add-ons, set-up and their discount lines), before the pending
    items of changes it also bills."""
    own = []
    for line in lines:
        if line.subscription_change_id or line.kind == LineKind.PRORATION:
            break
        own.append(line)
    return own


def discounts_check(invoices) -> list[Violation]:  # noqa: C901 - one pass over each invoice's lines, rule by rule
    found: list[Violation] = []
    discounts = {
        d.pk: d
        for d in Discount.objects.select_related("coupon", "promotion_code").prefetch_related(
            "coupon__amounts", "coupon__packages__components__sku"
        )
    }
    skus = {d.coupon_id: _sku_codes(d.coupon) for d in discounts.values()}
    by_subscription = defaultdict(list)
    for discount in discounts.values():
        by_subscription[discount.subscription_id or ("customer", discount.customer_id)].append(discount)
    # No stacking: one discount at a time per subscription.
    for key, rows in by_subscription.items():
        rows.sort(key=lambda d: (d.starts_at, d.pk))
        for first, second in zip(rows, rows[1:], strict=False):
            if first.ends_at is None or first.ends_at > second.starts_at:
                found.append(
                    Violation("discounts", f"subscription {key}", f"discounts {first.pk} and {second.pk} overlap")
                )
    invoices = list(invoices)
    change_ids = {
        line.subscription_change_id for i in invoices for line in i.lines.all() if line.subscription_change_id
    }
    change_instants = dict(SubscriptionChange.objects.filter(pk__in=change_ids).values_list("pk", "effective_at"))
    for invoice in invoices:
        lines = sorted(invoice.lines.all(), key=lambda line: (line.position, line.pk))
        subject = f"invoice {invoice.number} ({invoice.customer.name})"
        previous = None
        discounted = set()
        for line in lines:
            if line.kind != LineKind.DISCOUNT:
                previous = line
                continue
            discount = discounts.get(line.discount_id)
            if previous is None or discount is None or (previous.sku_code != line.sku_code):
                found.append(Violation("discounts", subject, f"discount line '{line.description}' follows no line"))
                continue
            if previous.pk in discounted:
                found.append(Violation("discounts", subject, f"line '{previous.description}' discounted twice"))
            discounted.add(previous.pk)
            # a change's lines begin at the change instant; a period's lines at their period's start
            start = (
                change_instants.get(previous.subscription_change_id) or previous.period_start or invoice.period_start
            )
            end = previous.period_end or invoice.period_end
            if start and end and not _covers(discount, start):
                found.append(
                    Violation(
                        "discounts",
                        subject,
                        f"discount {discount.coupon.name} (ends {discount.ends_at}) applied to {start:%Y-%m-%d}–"
                        f"{end:%Y-%m-%d}",
                    )
                )
            if previous.amount_minor and (line.amount_minor > 0) == (previous.amount_minor > 0):
                found.append(Violation("discounts", subject, f"discount {line.amount_minor} adds to the line"))
            if abs(line.amount_minor) > abs(previous.amount_minor):
                found.append(
                    Violation(
                        "discounts", subject, f"discount {line.amount_minor} takes '{previous.description}' below zero"
                    )
                )
            coupon = discount.coupon
            if coupon.kind == CouponKind.PERCENT:
                want = -half_up(Decimal(previous.amount_minor) * coupon.percent_off / 100)
                if want != line.amount_minor:
                    found.append(
                        Violation(
                            "discounts",
                            subject,
                            f"{coupon.percent_off} % of {previous.amount_minor} is {want}, line says "
                            f"{line.amount_minor}",
                        )
                    )
        if invoice.kind == InvoiceKind.REGULAR and invoice.subscription_id and invoice.period_start:
            found += _period_invoice_check(invoice, lines, subject, by_subscription, skus)
    found += _counters(discounts)
    found += _credits()
    return found


def _period_invoice_check(invoice, lines, subject, by_subscription, skus) -> list[Violation]:
    """A period invoice carries the discount that covers its period (and no other), the fixed amount's rule exact."""
    found = []
    own = _own_lines(invoice, lines)
    charges = [line for line in own if line.kind != LineKind.DISCOUNT]
    # By dates alone: a discount redeemed after its period was invoiced starts at the redemption, after the period's
    # start, so that period invoice never carries it (docs/billing-rules.md, "Discounts").
    covering = [d for d in by_subscription.get(invoice.subscription_id, []) if _covers(d, invoice.period_start)] or [
        d for d in by_subscription.get(("customer", invoice.customer_id), []) if _covers(d, invoice.period_start)
    ]
    discount = covering[-1] if covering else None
    given = {line.pk: line for line in own if line.kind == LineKind.DISCOUNT}
    by_charge = {}
    previous = None
    for line in own:
        if line.kind == LineKind.DISCOUNT and previous is not None:
            by_charge[previous.pk] = line
        elif line.kind != LineKind.DISCOUNT:
            previous = line
    if discount is None:
        if given:
            found.append(Violation("discounts", subject, "discount lines on a period no discount covers"))
        return found
    coupon = discount.coupon
    amount_off = next((a.amount_minor for a in coupon.amounts.all() if a.currency == invoice.currency), 0)
    if coupon.kind == CouponKind.FIXED and not amount_off:
        return found
    eligible = 0
    for line in charges:
        if not line.amount_minor or not _applies(coupon, line.sku_code, skus):
            continue
        if coupon.kind == CouponKind.PERCENT:
            want = -half_up(Decimal(line.amount_minor) * coupon.percent_off / 100)
        else:
            full = line.quantity * line.unit_amount_minor or line.amount_minor
            before = min(amount_off, max(0, eligible))
            eligible += full
            after = min(amount_off, max(0, eligible))
            want = -half_up(Decimal(after - before) * Decimal(line.amount_minor) / Decimal(full))
        got = by_charge.get(line.pk)
        got_minor = got.amount_minor if got is not None else 0
        if want != got_minor:
            found.append(
                Violation(
                    "discounts",
                    subject,
                    f"'{line.description}' {line.amount_minor} under {coupon.name}: discount {got_minor}, rule says "
                    f"{want} (discount {discount.pk} {discount.starts_at:%Y-%m-%d %H:%M}–{discount.ends_at}, made "
                    f"{discount.created_at:%Y-%m-%d %H:%M}; invoice made {invoice.created_at:%Y-%m-%d %H:%M})",
                )
            )
    return found


def _counters(discounts: dict) -> list[Violation]:
    found = []
    per_coupon = Counter(d.coupon_id for d in discounts.values())
    per_code = Counter(d.promotion_code_id for d in discounts.values() if d.promotion_code_id)
    for coupon in Coupon.objects.all():
        if coupon.times_redeemed != per_coupon[coupon.pk] or (
            coupon.max_redemptions is not None and per_coupon[coupon.pk] > coupon.max_redemptions
        ):
            found.append(
                Violation(
                    "discounts", f"coupon {coupon.name}", f"counted {coupon.times_redeemed}, {per_coupon[coupon.pk]}"
                )
            )
    for code in PromotionCode.objects.all():
        if code.times_redeemed != per_code[code.pk] or (
            code.max_redemptions is not None and per_code[code.pk] > code.max_redemptions
        ):
            found.append(
                Violation(
                    "discounts", f"promotion code {code.code}", f"counted {code.times_redeemed}, {per_code[code.pk]}"
                )
            )
    per_customer = Counter((d.customer_id, d.coupon_id) for d in discounts.values())
    for (customer_id, coupon_id), count in per_customer.items():
        if count > 1:
            found.append(
                Violation("discounts", f"customer {customer_id}", f"redeemed coupon {coupon_id} {count} times")
            )
    return found


def _credits() -> list[Violation]:
    """A credit note credits what was charged: per invoice line, at most its amount plus its discount lines."""
    found = []
    credited = defaultdict(int)
    for line in CreditNoteLine.objects.filter(invoice_line__isnull=False).select_related("invoice_line"):
        if line.invoice_line.kind == LineKind.DISCOUNT:
            found.append(Violation("discounts", f"credit note line {line.pk}", "credits a discount line on its own"))
        credited[line.invoice_line_id] += line.amount_minor
    invoice_ids = set(InvoiceLine.objects.filter(pk__in=credited).values_list("invoice_id", flat=True))
    charged, current = {}, None
    for line in InvoiceLine.objects.filter(invoice_id__in=invoice_ids).order_by("invoice_id", "position", "pk"):
        if line.kind == LineKind.DISCOUNT and current is not None and current.invoice_id == line.invoice_id:
            charged[current.pk] += line.amount_minor
        elif line.kind != LineKind.DISCOUNT:
            current = line
            charged[line.pk] = line.amount_minor
    for line_id, amount in credited.items():
        if line_id in charged and amount > charged[line_id]:
            found.append(
                Violation("discounts", f"invoice line {line_id}", f"credited {amount}, charged {charged[line_id]}")
            )
    return found
