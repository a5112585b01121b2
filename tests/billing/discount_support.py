"""Helpers for discount tests: coupons and promotion codes as staff create them in the admin."""

from decimal import Decimal

from billing.models import Coupon, CouponAmount, PromotionCode


def make_coupon(
    *,
    name: str = "Launch 20",
    percent: str | None = "20",
    amounts: dict[str, int] | None = None,
    duration: str = "forever",
    periods: int | None = None,
    packages=(),
    **limits,
) -> Coupon:
    coupon = Coupon.objects.create(
        name=name,
        kind="percent" if amounts is None else "fixed",
        percent_off=Decimal(percent) if amounts is None else None,
        duration=duration,
        duration_periods=periods,
        applies_to_all=not packages,
        **limits,
    )
    if packages:
        coupon.packages.add(*packages)
    for currency, amount in (amounts or {}).items():
        CouponAmount.objects.create(coupon=coupon, currency=currency, amount_minor=amount)
    return coupon


def make_code(coupon: Coupon, code: str = "LAUNCH20", **fields) -> PromotionCode:
    return PromotionCode.objects.create(coupon=coupon, code=code, **fields)
