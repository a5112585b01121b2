"""The billing run: renew subscriptions whose period has ended, draft the invoice of every started period, then run
the pre-issue checks (issue or hold).

Idempotent: Invoice has a unique constraint on (subscription, period_start) for regular invoices, and drafting skips
periods that already have one, so a re-run, an overlapping run or a duplicate task never bills twice.
Scales: subscriptions are read in keyset-paginated chunks (id > last id, LIMIT chunk) with everything a chunk needs
prefetched in a constant number of queries, and invoices, lines and tax lines are bulk-inserted per chunk; memory
stays flat however many subscriptions there are.
"""

import inspect
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Prefetch, Q
from django.utils import timezone
from subscriptions.services.terms import AddonTerms, Terms, sku_for, terms_lines

from billing.models import (
    BillingProfile,
    ExemptionStatus,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    InvoiceStatusChange,
    InvoiceTaxLine,
    LineKind,
    PendingInvoiceItem,
    TaxExemption,
    TaxRate,
)
from billing.services.invoices import apply_tax_result, invoice_finalize
from billing.services.tax import TaxContext, is_reverse_charge, tax_compute
from subscriptions.models import (
    LIVE_STATUSES,
    SkuKind,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)

logger = logging.getLogger(__name__)
DEFAULT_CHUNK = 500
BILLABLE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


@dataclass
class BillingRunResult:
    as_of: str
    renewed: int = 0
    drafted: int = 0
    issued: int = 0
    held: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


# --- renewal --------------------------------------------------------------------------------------------------------


def _renew(subscription_id: int, as_of: datetime) -> None:
    """Renew one subscription by one period through the subscriptions work's lifecycle service."""
    try:
        from subscriptions.services.lifecycle import subscription_renew
    except ImportError:
        _renew_minimal(subscription_id, as_of)
        return
    accepted = inspect.signature(subscription_renew).parameters
    kwargs = {}
    if "subscription_id" in accepted:
        kwargs["subscription_id"] = subscription_id
    else:
        kwargs["subscription"] = Subscription.objects.get(pk=subscription_id)
    for name in ("at", "as_of", "now"):
        if name in accepted:
            kwargs[name] = as_of
            break
    subscription_renew(**kwargs)


# TEMPORARY — until subscriptions.services.lifecycle.subscription_renew (the subscriptions work, issue 4) is on main.
# The minimum billing needs: end subscriptions canceled at period end, start the paid period after a trial, apply
# scheduled seat decreases, and advance the period by one interval. Package/add-on scheduled changes are left to the
# real renewal. `_renew` switches to the real one automatically as soon as the module exists.
def _renew_minimal(subscription_id: int, as_of: datetime) -> None:
    from subscriptions.models import ScheduledChangeKind, SeatLedgerEntry
    from subscriptions.periods import period_end
    from subscriptions.services.audit import audit_record

    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription_id)
        if sub.current_period_end > as_of:
            return
        boundary = sub.current_period_end
        before = {"status": sub.status, "period_end": boundary.isoformat(), "seats": sub.seats}
        if sub.status == SubscriptionStatus.CANCELED or sub.cancel_at_period_end:
            sub.status = SubscriptionStatus.ENDED
            sub.ended_at = boundary
            sub.canceled_at = sub.canceled_at or boundary
        else:
            if sub.status == SubscriptionStatus.TRIALING:
                sub.status = SubscriptionStatus.ACTIVE
            for change in sub.scheduled_changes.filter(
                kind=ScheduledChangeKind.SEATS,
                applied_at__isnull=True,
                canceled_at__isnull=True,
                effective_at__lte=boundary,
            ):
                seats = int(change.payload["seats"])
                SeatLedgerEntry.objects.create(
                    subscription=sub, seats_from=sub.seats, seats_to=seats, reason="renewal", effective_at=boundary
                )
                sub.seats = seats
                change.applied_at = timezone.now()
                change.save(update_fields=["applied_at"])
            sub.current_period_start = boundary
            sub.current_period_end = period_end(boundary, sub.interval)
        sub.version += 1
        sub.save()
        audit_record(
            customer=sub.customer,
            action="subscription.renewed" if sub.status != SubscriptionStatus.ENDED else "subscription.ended",
            obj=sub,
            summary=f"Renewed until {sub.current_period_end:%Y-%m-%d}"
            if sub.status != SubscriptionStatus.ENDED
            else "Subscription ended at period end",
            before=before,
            after={"status": sub.status, "period_end": sub.current_period_end.isoformat(), "seats": sub.seats},
        )


def _renew_due(*, as_of: datetime, chunk_size: int) -> int:
    """Renew (one period) every live subscription whose period ended by `as_of`; returns how many renewed."""
    renewed = 0
    last_id = 0
    while True:
        ids = list(
            Subscription.objects.filter(
                id__gt=last_id, status__in=(*LIVE_STATUSES, SubscriptionStatus.CANCELED), current_period_end__lte=as_of
            )
            .order_by("id")
            .values_list("id", flat=True)[:chunk_size]
        )
        if not ids:
            return renewed
        state = "current_period_end", "status"
        before = {pk: rest for pk, *rest in Subscription.objects.filter(pk__in=ids).values_list("pk", *state)}
        for subscription_id in ids:
            try:
                _renew(subscription_id, as_of)
            except Exception:  # one bad subscription must not stop the run; it is retried next hour
                logger.exception("billing run: renewal of subscription %s failed", subscription_id)
        # Count only real progress, so a renewal that changes nothing can never make the run loop.
        after = Subscription.objects.filter(pk__in=ids).values_list("pk", *state)
        renewed += sum(1 for pk, *rest in after if rest != before.get(pk))
        last_id = ids[-1]


# --- drafting -------------------------------------------------------------------------------------------------------


class _TaxData:
    """Everything tax determination needs for a chunk, loaded in a constant number of queries."""

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
            if exemption.expires_on > tax_date and exemption.covers(country=country, region=region):
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


def _terms(subscription: Subscription) -> Terms:
    # Mirrors subscriptions.services.terms.terms_current, on prefetched add-ons (no query per subscription).
    addons = tuple(
        AddonTerms(
            package=addon.package,
            price_id=addon.price_id,
            flat_amount_minor=addon.flat_amount_minor,
            quantity=addon.quantity,
            addon_id=addon.pk,
        )
        for addon in subscription.live_addons
    )
    return Terms(
        package=subscription.package,
        price_id=subscription.price_id,
        interval=subscription.interval,
        currency=subscription.currency,
        flat_amount_minor=subscription.flat_amount_minor,
        seat_amount_minor=subscription.seat_amount_minor,
        included_seats=subscription.included_seats,
        seats=subscription.seats,
        addons=addons,
    )


def _period_lines(subscription: Subscription, *, first: bool, pending: list[PendingInvoiceItem]) -> list[InvoiceLine]:
    start, end = subscription.current_period_start, subscription.current_period_end
    lines: list[InvoiceLine] = []
    for preview_line in terms_lines(_terms(subscription), period_start=start, period_end=end):
        lines.append(
            InvoiceLine(
                kind=LineKind.FLAT,
                description=preview_line.description,
                sku_code=preview_line.sku_code,
                period_start=preview_line.period_start,
                period_end=preview_line.period_end,
                quantity=preview_line.quantity,
                unit_amount_minor=preview_line.unit_amount_minor,
                amount_minor=preview_line.amount_minor,
                tax_category=preview_line.tax_category,
            )
        )
    # terms_lines order: plan, then additional seats (if billed), then add-ons.
    if lines:
        billed_seats = max(0, subscription.seats - subscription.included_seats)
        if billed_seats and len(lines) > 1:
            lines[1].kind = LineKind.SEATS
        for line in lines[(2 if billed_seats else 1) :]:
            line.kind = LineKind.ADDON
    setup = subscription.price.setup_amount_minor
    if first and setup:
        code, tax_category = sku_for(subscription.package, SkuKind.ONE_TIME)
        lines.append(
            InvoiceLine(
                kind=LineKind.SETUP,
                description=f"{subscription.package.name} — one-time onboarding and set-up",
                sku_code=code,
                quantity=1,
                unit_amount_minor=setup,
                amount_minor=setup,
                tax_category=tax_category,
            )
        )
    for item in pending:
        lines.append(
            InvoiceLine(
                kind=LineKind.PRORATION,
                description=item.description,
                sku_code=item.sku_code,
                period_start=item.period_start,
                period_end=item.period_end,
                quantity=item.quantity,
                unit_amount_minor=item.unit_amount_minor,
                amount_minor=item.amount_minor,
                is_proration=item.is_proration,
                tax_category=item.tax_category,
                subscription_change_id=item.subscription_change_id,
            )
        )
    for position, line in enumerate(lines):
        line.position = position
    return lines


def _unbilled(as_of: datetime | None = None):
    has_invoice = Invoice.objects.filter(
        subscription_id=OuterRef("pk"), kind=InvoiceKind.REGULAR, period_start=OuterRef("current_period_start")
    )
    queryset = Subscription.objects.filter(status__in=BILLABLE_STATUSES).filter(~Exists(has_invoice))
    return queryset.filter(current_period_start__lte=as_of) if as_of is not None else queryset


def draft_chunk(*, subscription_ids: list[int]) -> list[int]:
    """Draft the current-period invoice of each subscription in `subscription_ids` that has none; returns new ids.

    A constant number of queries per chunk. On a conflict with a concurrent run (unique (subscription, period
    start)), the chunk is retried one subscription at a time, skipping those the other run drafted.
    """
    subscriptions = list(
        _unbilled()
        .filter(pk__in=subscription_ids)
        .select_related("package", "price", "customer")
        .prefetch_related(
            "package__components__sku",
            Prefetch(
                "addons",
                queryset=SubscriptionAddon.objects.filter(ended_at__isnull=True)
                .select_related("package")
                .prefetch_related("package__components__sku")
                .order_by("pk"),
                to_attr="live_addons",
            ),
        )
        .order_by("pk")
    )
    if not subscriptions:
        return []
    try:
        with transaction.atomic():
            return _draft_many(subscriptions)
    except IntegrityError:
        created = []
        for subscription in subscriptions:
            try:
                with transaction.atomic():
                    created += _draft_many([subscription])
            except IntegrityError:
                logger.info("billing run: subscription %s period already drafted by another run", subscription.pk)
        return created


def _draft_many(subscriptions: list[Subscription]) -> list[int]:
    ids = [s.pk for s in subscriptions]
    invoiced_before = set(
        Invoice.objects.filter(subscription_id__in=ids, kind=InvoiceKind.REGULAR)
        .exclude(status=InvoiceStatus.VOID, issued_at__isnull=True)
        .values_list("subscription_id", flat=True)
    )
    pending_by_sub: dict[int, list[PendingInvoiceItem]] = {}
    for item in PendingInvoiceItem.objects.select_for_update().filter(subscription_id__in=ids, invoice__isnull=True):
        pending_by_sub.setdefault(item.subscription_id, []).append(item)
    tax_data = _TaxData({s.customer_id for s in subscriptions})
    invoices, all_lines, all_tax_lines = [], [], []
    for subscription in subscriptions:
        pending = [p for p in pending_by_sub.get(subscription.pk, []) if p.currency == subscription.currency]
        lines = _period_lines(subscription, first=subscription.pk not in invoiced_before, pending=pending)
        invoice = Invoice(
            customer=subscription.customer,
            subscription=subscription,
            kind=InvoiceKind.REGULAR,
            currency=subscription.currency,
            period_start=subscription.current_period_start,
            period_end=subscription.current_period_end,
            billed_seats=subscription.seats,
        )
        context = tax_data.context(subscription.customer_id, subscription.current_period_start.date())
        result = tax_compute(lines=[(line.amount_minor, line.tax_category) for line in lines], context=context)
        tax_lines = apply_tax_result(
            invoice=invoice, lines=lines, result=result, profile=tax_data.profiles.get(subscription.customer_id)
        )
        invoices.append(invoice)
        all_lines.append(lines)
        all_tax_lines.append(tax_lines)
    Invoice.objects.bulk_create(invoices)
    line_rows, tax_rows, status_rows = [], [], []
    for invoice, lines, tax_lines in zip(invoices, all_lines, all_tax_lines, strict=True):
        for line in lines:
            line.invoice = invoice
            line_rows.append(line)
        for tax_line in tax_lines:
            tax_line.invoice = invoice
            tax_rows.append(tax_line)
        status_rows.append(InvoiceStatusChange(invoice=invoice, from_status="", to_status=InvoiceStatus.DRAFT))
    InvoiceLine.objects.bulk_create(line_rows)
    InvoiceTaxLine.objects.bulk_create(tax_rows)
    InvoiceStatusChange.objects.bulk_create(status_rows)
    by_sub = {invoice.subscription_id: invoice.pk for invoice in invoices}
    for subscription_id, items in pending_by_sub.items():
        PendingInvoiceItem.objects.filter(pk__in=[i.pk for i in items]).update(invoice_id=by_sub.get(subscription_id))
    return [invoice.pk for invoice in invoices]


def draft_due(*, as_of: datetime, chunk_size: int = DEFAULT_CHUNK) -> list[int]:
    """Draft invoices for every billable subscription whose current period started by `as_of` and has none."""
    created: list[int] = []
    last_id = 0
    while True:
        ids = list(_unbilled(as_of).filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return created
        created += draft_chunk(subscription_ids=ids)
        last_id = ids[-1]


def finalize_drafts(*, invoice_ids: list[int] | None = None, chunk_size: int = DEFAULT_CHUNK) -> tuple[int, int]:
    """Run the checks on drafts never checked (or on `invoice_ids`): issue or hold each. Returns (issued, held)."""
    issued = held = 0
    last_id = 0
    base = Invoice.objects.filter(status=InvoiceStatus.DRAFT, checks_run_at__isnull=True)
    if invoice_ids is not None:
        base = base.filter(pk__in=invoice_ids)
    while True:
        ids = list(base.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return issued, held
        for invoice_id in ids:
            try:
                invoice = invoice_finalize(invoice_id=invoice_id)
            except Exception:
                logger.exception("billing run: finalizing invoice %s failed", invoice_id)
                continue
            if invoice.status == InvoiceStatus.HELD:
                held += 1
            elif invoice.issued_at:
                issued += 1
        last_id = ids[-1]


def billing_run(
    *, as_of: datetime | None = None, chunk_size: int = DEFAULT_CHUNK, finalize: bool = True
) -> BillingRunResult:
    """Bill everything due by `as_of`: draft the invoice of each started period, renew ended periods (period by
    period, so a subscription several periods behind gets one invoice per period), then finalize the new drafts.

    Safe to run concurrently with itself and to re-run: nothing is billed twice.
    """
    as_of = as_of or timezone.now()
    result = BillingRunResult(as_of=as_of.isoformat())
    drafted: list[int] = []
    from billing.services.changes import changes_bill_unbilled

    changes_bill_unbilled()
    for _ in range(1000):  # bounded catch-up: one iteration per period behind
        drafted += draft_due(as_of=as_of, chunk_size=chunk_size)
        renewed = _renew_due(as_of=as_of, chunk_size=chunk_size)
        result.renewed += renewed
        if not renewed:
            break
    result.drafted = len(drafted)
    if finalize:
        result.issued, result.held = finalize_drafts(invoice_ids=drafted, chunk_size=chunk_size)
    return result


def subscription_ids_due(*, as_of: datetime):
    """Subscriptions the next run would touch (for ops/bench): renewals due or current periods not yet drafted."""
    return Subscription.objects.filter(
        Q(status__in=LIVE_STATUSES, current_period_end__lte=as_of) | Q(pk__in=_unbilled(as_of).values("pk"))
    ).values_list("pk", flat=True)
