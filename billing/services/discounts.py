"""Discounts: the computation (pure), finding the discount that covers a line, and redeeming coupons and promotion
codes under their limits. Rules and worked examples: docs/billing-rules.md, "Discounts".

Computation (`discount_lines_compute`), for the lines of one invoice or one change preview, before tax:
- a discount line follows each discounted line; tax is then computed on the lines *and* their discount lines, so
  tax is never computed on an undiscounted amount;
- percentage: `−percent × line amount`, rounded half-up (away from zero) once per line; a credit line (negative)
  gets a positive discount line, so the credit is of the discounted price;
- fixed amount: an amount off each billing period's eligible recurring amount E. The period's discount is
  `min(amount, E)` (the excess is lost, never carried over). Lines are taken in order, each moving E by its
  full-period price F and taking the change of `min(amount, E)` — so a line is never taken below zero, and a
  mid-period change gets exactly the difference of the discounted prices. A prorated line (amount A of its
  full-period price F) takes that full-period discount × A ÷ F, rounded half-up: the discounted price, prorated.

Redemption (`discount_redeem`) locks the coupon, then the promotion code (always in that order), re-reads their
counters under the lock, checks every limit and increments them in the same transaction: two customers redeeming the
last use at once get one success and one `PromotionCodeLimitReached` (tests/billing/test_discounts_postgres.py).
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Prefetch, Q
from django.utils import timezone

from billing.exceptions import (
    DiscountInvalid,
    PromotionCodeExpired,
    PromotionCodeInvalid,
    PromotionCodeLimitReached,
    PromotionCodeNotApplicable,
    PromotionCodeThrottled,
)
from billing.models import (
    BillingProfile,
    Coupon,
    CouponDuration,
    CouponKind,
    Discount,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    PendingInvoiceItem,
    PromotionCode,
)
from billing.models.discounts import discount_active_at
from billing.services.tax import tax_compute, tax_context_for
from subscriptions.models import (
    LIVE_STATUSES,
    Customer,
    Interval,
    PackageComponent,
    Subscription,
    SubscriptionStatus,
    User,
)
from subscriptions.money import format_date, format_money
from subscriptions.periods import add_months, period_end
from subscriptions.prebuilt import prebuilt
from subscriptions.services.audit import audit_record
from subscriptions.services.terms import PreviewLine, terms_current, terms_lines, terms_projected

# --- the computation (pure) -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscountTerms:
    """What the computation needs of one discount, in one currency."""

    name: str
    kind: str  # CouponKind
    percent_off: Decimal | None
    amount_off_minor: int  # fixed coupons: per billing period, in the lines' currency
    applies_to_all: bool
    sku_codes: frozenset[str]
    ends_at: datetime | None = None
    discount_id: int | None = None
    coupon_id: int | None = None
    promotion_code: str = ""
    starts_at: datetime | None = None  # None: a coupon not placed in time (the computation alone)

    def active_at(self, instant: datetime) -> bool:
        """The one coverage rule (`billing.models.discounts.discount_active_at`)."""
        return self.starts_at is None or discount_active_at(self.starts_at, self.ends_at, instant)

    def applies_to(self, sku_code: str) -> bool:
        return self.applies_to_all or (bool(sku_code) and sku_code in self.sku_codes)

    @property
    def label(self) -> str:
        if self.kind == CouponKind.PERCENT:
            return f"{self.name} ({self.percent_off.normalize():f} % off)"
        return self.name


@dataclass(frozen=True)
class ChargeLine:
    """A line to discount: its amount, its full-period price (quantity × unit price; equal to the amount unless the
    line is prorated), and what identifies what it bills."""

    amount_minor: int
    full_amount_minor: int
    sku_code: str = ""
    tax_category: str = "saas"
    description: str = ""


@dataclass(frozen=True)
class DiscountLine:
    for_index: int  # the position, in the input, of the line it discounts
    amount_minor: int  # opposite sign of the line's amount (or 0 lines are never returned)
    description: str
    sku_code: str
    tax_category: str
    discount_id: int | None

    def to_dict(self) -> dict:
        return {
            "for_index": self.for_index,
            "amount_minor": self.amount_minor,
            "description": self.description,
            "sku_code": self.sku_code,
            "tax_category": self.tax_category,
            "discount_id": self.discount_id,
        }


def _half_up(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def discount_lines_compute(
    *, lines: list[ChargeLine], terms: DiscountTerms | None, eligible_before_minor: int = 0
) -> list[DiscountLine]:
    """The discount lines for `lines` (see the module docstring). `eligible_before_minor`: for a mid-period change,
    the eligible recurring amount per period before the change (what the period's fixed discount already covers);
    0 for a period invoice."""
    if terms is None:
        return []
    out: list[DiscountLine] = []
    eligible = eligible_before_minor
    cap = terms.amount_off_minor
    for index, line in enumerate(lines):
        if not line.amount_minor or not terms.applies_to(line.sku_code):
            continue
        if terms.kind == CouponKind.PERCENT:
            amount = -_half_up(Decimal(line.amount_minor) * terms.percent_off / 100)
        else:
            full = line.full_amount_minor or line.amount_minor
            if (full > 0) != (line.amount_minor > 0):  # a line whose amount and price disagree in sign: leave it
                continue
            before = min(cap, max(0, eligible))
            eligible += full
            after = min(cap, max(0, eligible))
            full_discount = after - before  # ≥ 0 for a charge, ≤ 0 for a credit; |…| ≤ |full|
            amount = -_half_up(Decimal(full_discount) * Decimal(line.amount_minor) / Decimal(full))
        if amount:
            out.append(
                DiscountLine(
                    for_index=index,
                    amount_minor=amount,
                    description=f"Discount: {terms.label}"[:300],
                    sku_code=line.sku_code,
                    tax_category=line.tax_category,
                    discount_id=terms.discount_id,
                )
            )
    return out


def interleave(lines: list, discount_lines: list[DiscountLine]) -> list[tuple[object, DiscountLine | None]]:
    """[(line, None) or (None, discount line)] with each discount line right after the line it discounts."""
    by_index: dict[int, list[DiscountLine]] = {}
    for discount_line in discount_lines:
        by_index.setdefault(discount_line.for_index, []).append(discount_line)
    out: list[tuple[object, DiscountLine | None]] = []
    for index, line in enumerate(lines):
        out.append((line, None))
        out.extend((None, d) for d in by_index.get(index, []))
    return out


# --- reading discounts ----------------------------------------------------------------------------------------------


def _coupons_prefetch():
    return Prefetch(
        "coupon",
        queryset=Coupon.objects.prefetch_related(
            "amounts",
            Prefetch("packages__components", queryset=PackageComponent.objects.select_related("sku")),
        ),
    )


def _sku_codes(coupon: Coupon) -> frozenset[str]:
    return frozenset(component.sku.code for package in coupon.packages.all() for component in package.components.all())


def discount_terms_for(discount_or_coupon, *, currency: str, promotion_code: str = "") -> DiscountTerms | None:
    """The computation terms of a Discount (or a Coupon not yet redeemed) in `currency`; None when it gives nothing
    in that currency (a fixed coupon without an amount for it)."""
    discount = discount_or_coupon if isinstance(discount_or_coupon, Discount) else None
    coupon = discount.coupon if discount else discount_or_coupon
    amount = 0
    if coupon.kind == CouponKind.FIXED:
        amount = next((a.amount_minor for a in coupon.amounts.all() if a.currency == currency), 0)
        if not amount:
            return None
    return DiscountTerms(
        name=coupon.name,
        kind=coupon.kind,
        percent_off=Decimal(coupon.percent_off) if coupon.percent_off is not None else None,
        amount_off_minor=amount,
        applies_to_all=coupon.applies_to_all,
        sku_codes=frozenset() if coupon.applies_to_all else _sku_codes(coupon),
        ends_at=discount.ends_at if discount else None,
        starts_at=discount.starts_at if discount else None,
        discount_id=discount.pk if discount else None,
        coupon_id=coupon.pk,
        promotion_code=(discount.promotion_code.code if discount and discount.promotion_code_id else promotion_code),
    )


@prebuilt
def _discounts_shape():
    """Discounts with their promotion code and coupon tree (`DiscountsFor`), built once per process."""
    return (
        Discount.objects.select_related("promotion_code")
        .prefetch_related(_coupons_prefetch())
        .order_by("starts_at", "pk")
    )


class DiscountsFor:
    """The discounts of a set of subscriptions, loaded in a constant number of queries (the billing run's chunk,
    a page of subscriptions). A subscription's own discount wins over its customer's (as Stripe does)."""

    def __init__(self, subscriptions: list[Subscription]):
        ids = [s.pk for s in subscriptions]
        customer_ids = {s.customer_id for s in subscriptions}
        self._own: dict[int, list[Discount]] = {}
        self._customer: dict[int, list[Discount]] = {}
        if not ids:
            return
        for discount in _discounts_shape().filter(
            Q(subscription_id__in=ids) | Q(customer_id__in=customer_ids, subscription=None)
        ):
            if discount.subscription_id:
                self._own.setdefault(discount.subscription_id, []).append(discount)
            else:
                self._customer.setdefault(discount.customer_id, []).append(discount)

    def covering(
        self, subscription: Subscription, period_start: datetime, period_end: datetime | None = None
    ) -> Discount | None:
        """The discount applying to lines beginning at `period_start` (a period's start, or a change's instant):
        the one active then (`Discount.active_at`). `period_end` is not part of the rule."""
        for discounts in (self._own.get(subscription.pk, []), self._customer.get(subscription.customer_id, [])):
            found = [d for d in discounts if d.active_at(period_start)]
            if found:
                return found[-1]
        return None

    def upcoming(self, subscription: Subscription, at: datetime) -> Discount | None:
        """The discount covering `at` or starting later (what a customer "has")."""
        for discounts in (self._own.get(subscription.pk, []), self._customer.get(subscription.customer_id, [])):
            found = [d for d in discounts if d.ends_at is None or d.ends_at > at]
            if found:
                return found[-1]
        return None

    def terms(
        self, subscription: Subscription, period_start: datetime, period_end: datetime | None = None
    ) -> DiscountTerms | None:
        discount = self.covering(subscription, period_start, period_end)
        return discount_terms_for(discount, currency=subscription.currency) if discount else None


HAS_DISCOUNT = "billing_has_discount"


def has_discount_annotation() -> dict:
    """{HAS_DISCOUNT: Exists(…)} for a Subscription queryset: whether it (or its customer) has any discount at all,
    so a page of subscriptions without discounts costs no query per subscription to find out."""
    return {
        HAS_DISCOUNT: Exists(
            Discount.objects.filter(
                Q(subscription_id=OuterRef("pk")) | Q(customer_id=OuterRef("customer_id"), subscription=None)
            )
        )
    }


def discount_active_for(*, subscription: Subscription, at: datetime | None = None) -> Discount | None:
    """The discount a subscription has at `at` (now) or from a later period on."""
    return DiscountsFor([subscription]).upcoming(subscription, at or timezone.now())


def eligible_recurring_minor(*, terms_lines: list, discount_terms: DiscountTerms | None) -> int:
    """The part of a period's recurring lines (`subscriptions.services.terms.terms_lines`) a discount applies to."""
    if discount_terms is None:
        return 0
    return sum(line.amount_minor for line in terms_lines if discount_terms.applies_to(line.sku_code))


# --- promotion codes: lookup, throttling ----------------------------------------------------------------------------


def _throttle_limits() -> tuple[int, int, int]:
    return (
        getattr(settings, "PROMOTION_CODE_THROTTLE_CUSTOMER_LIMIT", 10),
        getattr(settings, "PROMOTION_CODE_THROTTLE_IP_LIMIT", 30),
        getattr(settings, "PROMOTION_CODE_THROTTLE_WINDOW_SECONDS", 15 * 60),
    )


def _throttle_keys(customer_key: str, ip: str) -> list[tuple[str, int]]:
    customer_limit, ip_limit, _ = _throttle_limits()
    keys = []
    for kind, value, limit in (("customer", customer_key, customer_limit), ("ip", ip, ip_limit)):
        if value:
            digest = hashlib.sha256(str(value).strip().lower().encode()).hexdigest()[:32]
            keys.append((f"promo-throttle:{kind}:{digest}", limit))
    return keys


def _throttle_check(customer_key: str, ip: str) -> None:
    keys = _throttle_keys(customer_key, ip)
    counts = cache.get_many([key for key, _ in keys])
    if any(counts.get(key, 0) >= limit for key, limit in keys):
        minutes = max(1, _throttle_limits()[2] // 60)
        raise PromotionCodeThrottled(f"Too many invalid promotion codes. Please wait {minutes} minutes and try again.")


def _throttle_failed(customer_key: str, ip: str) -> None:
    window = _throttle_limits()[2]
    for key, _ in _throttle_keys(customer_key, ip):
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:
                cache.add(key, 1, timeout=window)


def normalize_code(code) -> str:
    return code.strip() if isinstance(code, str) else ""


_INVALID = "This promotion code is not valid."


def promotion_code_find(*, code, customer_key: str = "", ip: str = "", lock: bool = False):
    """The promotion code matching `code` (case-insensitive), or PromotionCodeInvalid — one message for unknown and
    inactive codes alike. Invalid attempts count against `customer_key` (a customer id, or the e-mail being signed
    up) and the client address `ip`; past the limit every attempt is refused (PromotionCodeThrottled) before the
    code is looked up, so codes cannot be found by enumeration."""
    code = normalize_code(code)
    _throttle_check(customer_key, ip)
    queryset = PromotionCode.objects.select_related("coupon")
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    found = queryset.filter(code__iexact=code).first() if code and len(code) <= 40 else None
    if found is None or not found.is_active or not found.coupon.is_active:
        _throttle_failed(customer_key, ip)
        raise PromotionCodeInvalid(_INVALID)
    return found


# --- checks ---------------------------------------------------------------------------------------------------------


def _has_been_invoiced(customer_id: int) -> bool:
    return (
        Invoice.objects.filter(customer_id=customer_id, issued_at__isnull=False)
        .exclude(status=InvoiceStatus.VOID, kind=InvoiceKind.MANUAL)
        .exists()
    )


def _coupon_checks(
    coupon: Coupon,
    *,
    customer: Customer,
    subscription: Subscription | None,
    at: datetime,
    seats: int | None,
    package_ids: set[int] | None,
    currency: str | None,
) -> None:
    if coupon.redeem_by is not None and coupon.redeem_by <= at:
        raise PromotionCodeExpired(f"This offer ended on {format_date(coupon.redeem_by, customer.country)}.")
    if coupon.max_redemptions is not None and coupon.times_redeemed >= coupon.max_redemptions:
        raise PromotionCodeLimitReached("This offer has been fully redeemed.")
    if Discount.objects.filter(coupon=coupon, customer=customer).exists():
        raise PromotionCodeLimitReached("You have already used this offer.")
    if coupon.new_customers_only and _has_been_invoiced(customer.pk):
        raise PromotionCodeNotApplicable("This offer is for new customers only.")
    if coupon.min_seats and seats is not None and seats < coupon.min_seats:
        raise PromotionCodeNotApplicable(f"This offer needs at least {coupon.min_seats} seats.")
    if currency and coupon.kind == CouponKind.FIXED and not any(a.currency == currency for a in coupon.amounts.all()):
        raise PromotionCodeNotApplicable(f"This offer is not available for prices in {currency}.")
    if (
        not coupon.applies_to_all
        and package_ids is not None
        and not package_ids & {p.pk for p in coupon.packages.all()}
    ):
        names = ", ".join(sorted(p.name for p in coupon.packages.all()))
        raise PromotionCodeNotApplicable(f"This offer applies only to {names}.")
    # Discounts never stack: one applies to a subscription at a time (its own, else its customer's). A second one is
    # refused with a coded 4xx instead of silently replacing the first.
    if subscription is not None:
        existing = DiscountsFor([subscription]).upcoming(subscription, at)
        holder = "Your subscription"
    else:
        existing = (
            Discount.objects.filter(customer=customer, subscription=None)
            .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=at))
            .select_related("coupon")
            .order_by("-starts_at", "-pk")
            .first()
        )
        holder = "Your account"
    if existing is not None and existing.coupon_id != coupon.pk:
        until = f" until {format_date(existing.ends_at, customer.country)}" if existing.ends_at else ""
        raise PromotionCodeNotApplicable(
            f"{holder} already has a discount ({existing.coupon.name}{until}); discounts do not combine."
        )


def _promotion_code_checks(promotion_code, *, customer: Customer, at: datetime) -> None:
    if promotion_code.expires_at is not None and promotion_code.expires_at <= at:
        expired = format_date(promotion_code.expires_at, customer.country)
        raise PromotionCodeExpired(f"This promotion code expired on {expired}.")
    if promotion_code.max_redemptions is not None and promotion_code.times_redeemed >= promotion_code.max_redemptions:
        raise PromotionCodeLimitReached("This promotion code has been fully redeemed.")
    if promotion_code.first_time_only and _has_been_invoiced(customer.pk):
        raise PromotionCodeNotApplicable("This promotion code is for first-time customers only.")


def _subscription_package_ids(subscription: Subscription) -> set[int]:
    addon_ids = set(subscription.addons.filter(ended_at__isnull=True).values_list("package_id", flat=True))
    return {subscription.package_id} | addon_ids


@dataclass(frozen=True)
class DiscountCandidate:
    """A promotion code that passed every check for a subscription: what a preview shows before it is redeemed."""

    coupon: Coupon
    promotion_code: object  # PromotionCode
    terms: DiscountTerms
    starts_at: datetime
    ends_at: datetime | None
    periods_total: int | None


def promotion_code_validate(
    *,
    code,
    customer: Customer,
    subscription: Subscription | None,
    customer_key: str = "",
    ip: str = "",
    at: datetime | None = None,
    seats: int | None = None,
    package_ids: set[int] | None = None,
    interval: str | None = None,
    currency: str | None = None,
    lock: bool = False,
    new_period_start: datetime | None = None,
) -> DiscountCandidate:
    """Check `code` for `customer`/`subscription` without redeeming it (previews). `seats`, `package_ids`,
    `interval` and `new_period_start` (the start of a new term the change begins): the subscription after the change
    being previewed (default: as it is), so the candidate's span is the one redeeming it with the change gives.
    Raises a PromotionCodeError subclass with the customer-readable reason."""
    at = at or timezone.now()
    promotion_code = promotion_code_find(code=code, customer_key=customer_key or str(customer.pk), ip=ip, lock=lock)
    coupon = promotion_code.coupon
    if subscription is not None:
        seats = subscription.seats if seats is None else seats
        package_ids = _subscription_package_ids(subscription) if package_ids is None else package_ids
        currency = currency or subscription.currency
    _promotion_code_checks(promotion_code, customer=customer, at=at)
    _coupon_checks(
        coupon,
        customer=customer,
        subscription=subscription,
        at=at,
        seats=seats,
        package_ids=package_ids,
        currency=currency,
    )
    terms = discount_terms_for(coupon, currency=currency or customer.currency, promotion_code=promotion_code.code)
    if terms is None:
        raise PromotionCodeNotApplicable(f"This offer is not available for prices in {currency}.")
    starts_at, ends_at, periods = (
        _span(coupon, subscription, at, interval=interval, new_period_start=new_period_start)
        if subscription is not None
        else (at, None, None)
    )
    terms = DiscountTerms(**{**terms.__dict__, "starts_at": starts_at, "ends_at": ends_at})
    return DiscountCandidate(coupon, promotion_code, terms, starts_at, ends_at, periods)


def _months(interval: str) -> int:
    return 12 if interval == Interval.YEAR else 1


def _first_covered_period_start(subscription: Subscription, new_period_start: datetime | None = None) -> datetime:
    """The start of the first period a new discount covers in full: the current one while it has not been invoiced
    yet (sign-up, catch-up, a new term the change being redeemed with starts: `new_period_start`, or the
    subscription's current period when that change already started it), else the next one; after a trial, the first
    paid period."""
    if new_period_start is not None:
        return new_period_start
    if subscription.status == SubscriptionStatus.TRIALING:
        return subscription.current_period_end
    invoiced = Invoice.objects.filter(
        subscription=subscription, kind=InvoiceKind.REGULAR, period_start=subscription.current_period_start
    ).exists()
    return subscription.current_period_end if invoiced else subscription.current_period_start


def _span(
    coupon: Coupon,
    subscription: Subscription,
    at: datetime,
    *,
    interval: str | None = None,
    new_period_start: datetime | None = None,
) -> tuple[datetime, datetime | None, int | None]:
    """(starts_at, ends_at, periods) of a discount from `coupon` on `subscription` redeemed at `at`.

    `starts_at` is `at`, or the first covered period's start when that period has begun and is not invoiced yet
    (the discount is active for all of it: docs/billing-rules.md, "Discounts", the one coverage rule). `ends_at` is
    a period boundary counted from the first covered period's start (calendar months from the anchor, never from the
    previous boundary)."""
    first = _first_covered_period_start(subscription, new_period_start)
    starts_at = min(at, first)
    if coupon.duration == CouponDuration.FOREVER:
        return starts_at, None, None
    periods = 1 if coupon.duration == CouponDuration.ONCE else int(coupon.duration_periods)
    months = _months(interval or subscription.interval)
    return starts_at, add_months(first, periods * months), periods


# --- redeeming ------------------------------------------------------------------------------------------------------


def discount_redeem(
    *,
    customer: Customer,
    subscription: Subscription | None,
    promotion_code: str | None = None,
    coupon_id: int | None = None,
    actor: User | None = None,
    customer_key: str = "",
    ip: str = "",
    at: datetime | None = None,
) -> Discount:
    """Redeem a promotion code (customers) or attach a coupon directly (staff: `coupon_id`) for `customer`, on
    `subscription` (None: every subscription of the customer). Locks the coupon row and then the promotion code row,
    checks every limit on the values read under the lock, creates the Discount and counts the redemption on both —
    so a limit holds under concurrency. Raises a PromotionCodeError subclass (or DiscountInvalid) and writes nothing
    on refusal. Writes an audit row."""
    at = at or timezone.now()
    if (promotion_code is None) == (coupon_id is None):
        raise DiscountInvalid("Give a promotion code or a coupon.")
    with transaction.atomic():
        code_row = None
        if promotion_code is not None:
            found = promotion_code_find(code=promotion_code, customer_key=customer_key or str(customer.pk), ip=ip)
            coupon_id = found.coupon_id
        coupon = (
            Coupon.objects.select_for_update(of=("self",))
            .prefetch_related("amounts", "packages")
            .filter(pk=coupon_id)
            .first()
        )
        if coupon is None or not coupon.is_active:
            raise PromotionCodeInvalid(_INVALID)
        if promotion_code is not None:
            code_row = PromotionCode.objects.select_for_update().get(pk=found.pk)
            if not code_row.is_active:
                raise PromotionCodeInvalid(_INVALID)
            _promotion_code_checks(code_row, customer=customer, at=at)
        if subscription is not None:
            subscription = Subscription.objects.select_related("customer").get(pk=subscription.pk)
            if subscription.customer_id != customer.pk:
                raise DiscountInvalid("That subscription belongs to another customer.")
            if subscription.status not in LIVE_STATUSES:
                raise PromotionCodeNotApplicable("This subscription has ended; a discount cannot be added.")
        _coupon_checks(
            coupon,
            customer=customer,
            subscription=subscription,
            at=at,
            seats=subscription.seats if subscription else None,
            package_ids=_subscription_package_ids(subscription) if subscription else None,
            currency=subscription.currency if subscription else customer.currency,
        )
        if subscription is not None:
            starts_at, ends_at, periods = _span(coupon, subscription, at)
        else:
            live = customer.subscriptions.filter(status__in=LIVE_STATUSES).order_by("pk").first()
            if live is None and coupon.duration != CouponDuration.FOREVER:
                raise DiscountInvalid("This customer has no live subscription; attach the coupon to a subscription.")
            starts_at, ends_at, periods = _span(coupon, live, at) if live else (at, None, None)
        discount = Discount.objects.create(
            coupon=coupon,
            promotion_code=code_row,
            customer=customer,
            subscription=subscription,
            starts_at=starts_at,
            ends_at=ends_at,
            periods_total=periods,
            created_by=actor,
        )
        Coupon.objects.filter(pk=coupon.pk).update(times_redeemed=F("times_redeemed") + 1)
        if code_row is not None:
            type(code_row).objects.filter(pk=code_row.pk).update(times_redeemed=F("times_redeemed") + 1)
        until = f" until {format_date(ends_at, customer.country)}" if ends_at else " (no end)"
        audit_record(
            customer=customer,
            actor=actor,
            action="discount.redeemed",
            obj=discount,
            summary=f"Discount {coupon.name}{' with code ' + code_row.code if code_row else ''}{until}"[:300],
            after={
                "coupon_id": coupon.pk,
                "promotion_code": code_row.code if code_row else None,
                "subscription_id": subscription.pk if subscription else None,
                "ends_at": ends_at.isoformat() if ends_at else None,
            },
        )
    return discount


def discount_end(*, discount_id: int, at: datetime | None = None, actor: User | None = None) -> Discount:
    """End a discount: it stops at the first period boundary at or after `at` (a discount ending mid-period runs to
    the end of that period). Never extends a discount."""
    at = at or timezone.now()
    with transaction.atomic():
        # of=self: PostgreSQL cannot lock the nullable side of the outer join to the subscription.
        discount = (
            Discount.objects.select_for_update(of=("self",))
            .select_related("subscription", "coupon")
            .get(pk=discount_id)
        )
        subscription = discount.subscription or (
            discount.customer.subscriptions.filter(status__in=LIVE_STATUSES).order_by("pk").first()
        )
        if subscription is None:
            boundary = at
        else:
            months = _months(subscription.interval)
            boundary = subscription.current_period_start
            step = 0
            while boundary < at:
                step += 1
                boundary = add_months(subscription.current_period_start, step * months)
        if discount.ends_at is None or boundary < discount.ends_at:
            before = discount.ends_at
            discount.ends_at = max(boundary, discount.starts_at)
            ends = format_date(discount.ends_at, discount.customer.country)
            discount.save(update_fields=["ends_at"])
            audit_record(
                customer=discount.customer,
                actor=actor,
                action="discount.ended",
                obj=discount,
                summary=f"Discount {discount.coupon.name} ends {ends}",
                before={"ends_at": before.isoformat() if before else None},
                after={"ends_at": discount.ends_at.isoformat()},
            )
    return discount


def discount_describe(terms: DiscountTerms | None, currency: str, where: str) -> str:
    """“Launch 20 (20 % off), until Mar 1, 2027” — for previews and the dashboard; amounts and dates as `where` (the
    customer's country) writes them."""
    if terms is None:
        return ""
    if terms.kind == CouponKind.PERCENT:
        what = terms.label
    else:
        what = f"{terms.name} ({format_money(terms.amount_off_minor, currency, where)} off)"
    return f"{what}, until {format_date(terms.ends_at, where)}" if terms.ends_at else f"{what}, no end date"


# --- the next invoice, with its discount (staff attach preview, customers' discount preview, dashboard) -------------


@dataclass(frozen=True)
class NextInvoicePreview:
    """The subscription's next regular invoice as the billing run will draft it, with a discount applied."""

    subscription_id: int
    currency: str
    period_start: datetime
    period_end: datetime
    lines: tuple  # subscriptions.services.terms.PreviewLine, then pending items as PreviewLine
    discount_lines: tuple[DiscountLine, ...]
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    discount_minor: int
    discount_description: str = ""
    discount_ends_at: datetime | None = None
    promotion_code: str = ""


def next_invoice_preview(
    *, subscription: Subscription, discount_terms: DiscountTerms | None | bool = False, promotion_code: str = ""
) -> NextInvoicePreview:
    """The next regular invoice of `subscription` (the current period while it has not been invoiced, else the next
    one, at the terms in force then) with `discount_terms` (a promotion code or coupon being previewed), or — by
    default — the discount that covers that period. Pending items of mid-period changes are added as they are
    (their discount lines came with them). No writes."""
    invoiced = Invoice.objects.filter(
        subscription=subscription, kind=InvoiceKind.REGULAR, period_start=subscription.current_period_start
    ).exists()
    if subscription.status != SubscriptionStatus.TRIALING and not invoiced:
        start, end = subscription.current_period_start, subscription.current_period_end
        terms = terms_current(subscription)
    else:
        terms = terms_projected(subscription)
        start = subscription.current_period_end
        end = period_end(start, terms.interval)
    where = subscription.customer.country  # the customer reads the periods and dates as written there
    lines = terms_lines(terms, period_start=start, period_end=end, locale=where)
    if discount_terms is False:
        discount_terms = DiscountsFor([subscription]).terms(subscription, start, end)
    elif discount_terms is not None and not discount_terms.active_at(start):
        discount_terms = None
    discount_lines = discount_lines_compute(
        lines=[ChargeLine(line.amount_minor, line.amount_minor, line.sku_code, line.tax_category) for line in lines],
        terms=discount_terms,
    )
    pending = [
        PreviewLine(
            description=item.description,
            period_start=item.period_start or start,
            period_end=item.period_end or end,
            quantity=item.quantity,
            unit_amount_minor=item.unit_amount_minor,
            amount_minor=item.amount_minor,
            proration=item.is_proration,
            sku_code=item.sku_code,
            tax_category=item.tax_category,
        )
        for item in PendingInvoiceItem.objects.filter(
            subscription=subscription, invoice__isnull=True, currency=subscription.currency
        )
    ]
    profile = BillingProfile.objects.filter(customer_id=subscription.customer_id).first()
    context = tax_context_for(customer_id=subscription.customer_id, profile=profile, tax_date=start.date())
    result = tax_compute(
        lines=[(line.amount_minor, line.tax_category) for line in [*lines, *pending]]
        + [(line.amount_minor, line.tax_category) for line in discount_lines],
        context=context,
    )
    return NextInvoicePreview(
        subscription_id=subscription.pk,
        currency=subscription.currency,
        period_start=start,
        period_end=end,
        lines=(*lines, *pending),
        discount_lines=tuple(discount_lines),
        subtotal_minor=result.subtotal_minor,
        tax_minor=result.tax_minor,
        total_minor=result.total_minor,
        discount_minor=sum(line.amount_minor for line in discount_lines),
        discount_description=discount_describe(discount_terms, subscription.currency, where),
        discount_ends_at=discount_terms.ends_at if discount_terms else None,
        promotion_code=promotion_code,
    )


def discount_preview(
    *, subscription: Subscription, promotion_code: str | None = None, coupon_id: int | None = None, **throttle
) -> NextInvoicePreview:
    """Preview the next invoice with a promotion code (customers) or a coupon (staff, `coupon_id`) applied, after
    every check redeeming it would make. Raises the same coded errors as `discount_redeem`; writes nothing."""
    customer = subscription.customer
    if promotion_code is not None:
        candidate = promotion_code_validate(
            code=promotion_code, customer=customer, subscription=subscription, **throttle
        )
        return next_invoice_preview(
            subscription=subscription, discount_terms=candidate.terms, promotion_code=candidate.promotion_code.code
        )
    coupon = Coupon.objects.prefetch_related("amounts", "packages").filter(pk=coupon_id, is_active=True).first()
    if coupon is None:
        raise PromotionCodeInvalid("That coupon does not exist or is no longer active.", field="coupon")
    at = timezone.now()
    _coupon_checks(
        coupon,
        customer=customer,
        subscription=subscription,
        at=at,
        seats=subscription.seats,
        package_ids=_subscription_package_ids(subscription),
        currency=subscription.currency,
    )
    terms = discount_terms_for(coupon, currency=subscription.currency)
    starts_at, ends_at, _ = _span(coupon, subscription, at)
    terms = DiscountTerms(**{**terms.__dict__, "starts_at": starts_at, "ends_at": ends_at}) if terms else None
    return next_invoice_preview(subscription=subscription, discount_terms=terms)
