"""Tax determination (where is the customer, which rates, exempt? reverse charge?) and computation.

Rules (docs/billing-rules.md, "Tax"):
- The tax location is the billing profile's country and region. Rates apply to SKU tax categories; a line gets
  every rate of its country (region empty) and of its exact region that covers its category on the tax date.
- Tax per rate per invoice = taxable subtotal for that rate × rate, rounded half-up to the minor unit, once.
- An approved, unexpired exemption covering the jurisdiction zero-rates the invoice and prints its wording.
- EU B2B reverse charge: a valid VAT ID of an EU member state (the billing country) other than the seller's EU
  VAT establishment (settings.SELLER_EU_VAT_COUNTRY; empty = the seller is not established in the EU, as the
  default US seller) → 0 tax and the reverse-charge wording.
"""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Q

from billing.models import BillingProfile, ExemptionStatus, TaxExemption, TaxRate
from billing.services.profiles import EU_MEMBER_STATES, vat_country

REVERSE_CHARGE_WORDING = (
    "Reverse charge: VAT to be accounted for by the recipient (Article 196, Council Directive 2006/112/EC). "
    "Customer VAT ID: {vat_id}."
)
EXEMPTION_WORDING = (
    "Tax exempt: {kind} exemption certificate {number} for {jurisdictions}, valid until {expires}. "
    "No sales tax has been charged."
)


def round_minor(value: Decimal) -> int:
    """Round a Decimal amount of minor units to an integer, half-up (away from zero on .5)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def tax_amount(*, taxable_minor: int, rate_percent: Decimal) -> int:
    return round_minor(Decimal(taxable_minor) * Decimal(rate_percent) / Decimal(100))


@dataclass
class TaxContext:
    country: str
    region: str
    tax_date: date
    rates: list[TaxRate] = field(default_factory=list)
    exemption: TaxExemption | None = None
    reverse_charge: bool = False
    vat_id: str = ""

    @property
    def zero_rated(self) -> bool:
        return self.exemption is not None or self.reverse_charge

    @property
    def exemption_wording(self) -> str:
        if self.exemption is None:
            return ""
        e = self.exemption
        return EXEMPTION_WORDING.format(
            kind=e.get_exemption_type_display().lower(),
            number=e.certificate_number,
            jurisdictions=", ".join(e.jurisdictions),
            expires=e.expires_on.isoformat(),
        )

    @property
    def reverse_charge_wording(self) -> str:
        return REVERSE_CHARGE_WORDING.format(vat_id=self.vat_id) if self.reverse_charge else ""


@dataclass
class AppliedRate:
    tax_rate_id: int | None
    name: str
    jurisdiction: str
    rate: Decimal
    taxable_minor: int = 0
    tax_minor: int = 0


@dataclass
class TaxResult:
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    tax_lines: list[AppliedRate]
    # Per input line: (combined rate percent, joined names), copied onto invoice lines.
    line_rates: list[tuple[Decimal, str]]
    context: TaxContext


def exemption_active(*, customer_id: int, country: str, region: str, on: date) -> TaxExemption | None:
    """The approved exemption covering (country, region) on `on`, if any (`expires_on` is its last valid day)."""
    candidates = TaxExemption.objects.filter(
        customer_id=customer_id, status=ExemptionStatus.APPROVED, expires_on__gte=on
    ).order_by("-decided_at", "-id")
    for exemption in candidates:
        if exemption.covers(country=country, region=region):
            return exemption
    return None


def is_reverse_charge(*, profile: BillingProfile | None) -> bool:
    if profile is None or not profile.tax_id or not profile.tax_id_valid:
        return False
    country = (profile.country or "").upper()
    if country not in EU_MEMBER_STATES or vat_country(profile.tax_id) != country:
        return False
    seller_eu = (getattr(settings, "SELLER_EU_VAT_COUNTRY", "") or "").upper()
    return country != seller_eu


def tax_rates_for(*, country: str, region: str, tax_date: date) -> list[TaxRate]:
    """The rates in force in (country, region) on `tax_date`: the country's own and the region's."""
    return list(
        TaxRate.objects.filter(country=country, effective_from__lte=tax_date)
        .filter(Q(region="") | Q(region=region))
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=tax_date))
        .order_by("region", "name", "id")
    )


def tax_context_for(
    *,
    customer_id: int,
    profile: BillingProfile | None,
    tax_date: date,
    check_exemptions: bool = True,
    rates: Callable[..., list[TaxRate]] = tax_rates_for,
) -> TaxContext:
    """Location, rates, approved exemption and reverse charge for one customer on `tax_date`. `check_exemptions=False`
    (the caller knows the customer has no exemption at all) saves the exemption query; `rates`: how the rates are
    read (`tax_rates_for`, or a cached equivalent with the same signature)."""
    country = (profile.country if profile else "") or ""
    region = (profile.region if profile else "") or ""
    context = TaxContext(country=country, region=region, tax_date=tax_date)
    if not country:
        return context
    if check_exemptions:
        context.exemption = exemption_active(customer_id=customer_id, country=country, region=region, on=tax_date)
    if context.exemption is None and is_reverse_charge(profile=profile):
        context.reverse_charge = True
        context.vat_id = profile.tax_id
    context.rates = rates(country=country, region=region, tax_date=tax_date)
    return context


def tax_compute(*, lines: list[tuple[int, str]], context: TaxContext) -> TaxResult:
    """Compute tax for `lines` given as (amount_minor, tax_category).

    Zero-rated contexts (exemption, reverse charge) still report which rates would have applied, with 0 tax, so the
    invoice shows the rate as 0 % and never a stale rate.
    """
    applied: OrderedDict[int, AppliedRate] = OrderedDict()
    line_rates: list[tuple[Decimal, str]] = []
    subtotal = 0
    for amount_minor, category in lines:
        subtotal += amount_minor
        matching = [rate for rate in context.rates if category in (rate.tax_categories or [])]
        if context.zero_rated:
            matching = []
        for rate in matching:
            entry = applied.setdefault(
                rate.pk, AppliedRate(rate.pk, rate.name, rate.jurisdiction, Decimal(rate.rate).normalize())
            )
            entry.taxable_minor += amount_minor
        line_rates.append((sum((Decimal(r.rate) for r in matching), Decimal(0)), " + ".join(r.name for r in matching)))
    tax_total = 0
    for entry in applied.values():
        entry.tax_minor = tax_amount(taxable_minor=entry.taxable_minor, rate_percent=entry.rate)
        tax_total += entry.tax_minor
    return TaxResult(
        subtotal_minor=subtotal,
        tax_minor=tax_total,
        total_minor=subtotal + tax_total,
        tax_lines=list(applied.values()),
        line_rates=line_rates,
        context=context,
    )


class TaxData:
    """Everything tax determination needs for a chunk of customers (profiles, approved exemptions, rates), loaded
    in a constant number of queries; `context()` then answers as `tax_context_for` would, without a query. Used by
    the billing run's drafting and by batch finalizing."""

    def __init__(self, customer_ids: set[int]):
        self.profiles = {p.customer_id: p for p in BillingProfile.objects.filter(customer_id__in=customer_ids)}
        self.exemptions: dict[int, list[TaxExemption]] = {}
        for exemption in TaxExemption.objects.filter(
            customer_id__in=customer_ids, status=ExemptionStatus.APPROVED
        ).order_by("-decided_at", "-id"):
            self.exemptions.setdefault(exemption.customer_id, []).append(exemption)
        self._rates: dict[str, list[TaxRate]] = {}
        for rate in TaxRate.objects.all().order_by("region", "name", "id"):
            self._rates.setdefault(rate.country, []).append(rate)

    def context(self, customer_id: int, tax_date) -> TaxContext:
        profile = self.profiles.get(customer_id)
        country = (profile.country if profile else "") or ""
        region = (profile.region if profile else "") or ""
        context = TaxContext(country=country, region=region, tax_date=tax_date)
        if not country:
            return context
        for exemption in self.exemptions.get(customer_id, []):
            if exemption.expires_on >= tax_date and exemption.covers(country=country, region=region):
                context.exemption = exemption
                break
        if context.exemption is None and is_reverse_charge(profile=profile):
            context.reverse_charge = True
            context.vat_id = profile.tax_id
        context.rates = [
            rate
            for rate in self._rates.get(country, [])
            if rate.region in ("", region)
            and rate.effective_from <= tax_date
            and (rate.effective_to is None or rate.effective_to > tax_date)
        ]
        return context
