"""Packages as customers compare them: price per interval in their currency, what a seat count costs, annual saving."""

from dataclasses import dataclass

from subscriptions.models import Package, Price


@dataclass
class IntervalOffer:
    price: Price
    seats: int
    included_seats: int

    @property
    def total_minor(self) -> int:
        extra = max(0, self.seats - self.included_seats)
        return self.price.flat_amount_minor + extra * self.price.seat_amount_minor


@dataclass
class Offer:
    package: Package
    month: IntervalOffer | None
    year: IntervalOffer | None

    @property
    def annual_saving_minor(self) -> int:
        if not (self.month and self.year):
            return 0
        return max(0, 12 * self.month.total_minor - self.year.total_minor)

    @property
    def annual_saving_percent(self) -> int:
        if not self.annual_saving_minor:
            return 0
        return round(100 * self.annual_saving_minor / (12 * self.month.total_minor))

    @property
    def setup_minor(self) -> int:
        price = (self.month or self.year).price if (self.month or self.year) else None
        return price.setup_amount_minor if price else 0


def offers_for(packages, *, currency: str, seats: int | None = None) -> list[Offer]:
    """Offers for `packages` (prefetch `prices`) from their active prices in `currency`; unpriced ones are left out."""
    offers = []
    for package in packages:
        by_interval = {p.interval: p for p in package.prices.all() if p.is_active and p.currency == currency.upper()}
        if not by_interval:
            continue
        n = max(seats or package.min_seats, package.min_seats)
        offers.append(
            Offer(
                package=package,
                month=IntervalOffer(by_interval["month"], n, package.included_seats)
                if "month" in by_interval
                else None,
                year=IntervalOffer(by_interval["year"], n, package.included_seats) if "year" in by_interval else None,
            )
        )
    return offers
