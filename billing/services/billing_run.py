"""The billing run: renew subscriptions whose period has ended, draft the invoice of every started period, then run
the pre-issue checks (issue or hold).

Idempotent: Invoice has a unique constraint on (subscription, period_start) for regular invoices, and drafting skips
periods that already have one, so a re-run, an overlapping run or a duplicate task never bills twice.
Scales: subscriptions are read in keyset-paginated chunks (id > last id, LIMIT chunk) with everything a chunk needs
prefetched in a constant number of queries, and invoices, lines and tax lines are bulk-inserted per chunk; memory
stays flat however many subscriptions there are.
"""

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Prefetch
from django.utils import timezone

from billing.gc_frozen import long_lived_objects_frozen
from billing.models import (
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    InvoiceStatusChange,
    InvoiceTaxLine,
    LineKind,
    PendingInvoiceItem,
)
from billing.services.discounts import ChargeLine, DiscountsFor, discount_lines_compute
from billing.services.invoices import apply_tax_result, invoice_finalize, invoices_finalize_batch, line_fields
from billing.services.tax import TaxData, tax_compute
from subscriptions import bulk
from subscriptions.clock import utc_date
from subscriptions.dispatch import enqueue_on_commit
from subscriptions.models import (
    Package,
    PackageComponent,
    SkuKind,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.prebuilt import prebuilt
from subscriptions.services.lifecycle import subscription_renew_batch
from subscriptions.services.terms import Terms, sku_for, terms_from, terms_lines

logger = logging.getLogger(__name__)
DEFAULT_CHUNK = 500
BILLABLE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)

# Work the billing run does first, registered by the layers above it (billing/apps.py registers the billing of
# mid-period changes, billing.services.changes, which itself drafts and renews through this module). A registry
# rather than an import: the run sits below the services that reuse its drafting.
_BEFORE_DRAFTING: list[Callable[[], object]] = []


def billing_run_step_register(step: Callable[[], object]) -> None:
    """Run `step()` at the start of every billing run, before drafting (once per step, in registration order)."""
    if step not in _BEFORE_DRAFTING:
        _BEFORE_DRAFTING.append(step)


@dataclass
class BillingRunResult:
    as_of: str
    renewed: int = 0
    drafted: int = 0
    issued: int = 0
    held: int = 0
    finalize_chunks_queued: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class PeriodToBill:
    """One period of one subscription to invoice: full-period lines at the terms in force at its start."""

    subscription: Subscription
    period_start: datetime
    period_end: datetime
    seats: int
    lines: list  # subscriptions.services.terms.PreviewLine


def _terms(subscription: Subscription) -> Terms:
    return terms_from(subscription, addons=subscription.live_addons)  # prefetched: no query per subscription


def _with_discount_lines(lines: list[InvoiceLine], terms) -> list[InvoiceLine]:
    """The period's own lines (before the pending items are added: a change's discount lines came with it), each
    followed by its discount line (docs/billing-rules.md, "Discounts")."""
    if terms is None:
        return lines
    own = lines
    discount_lines = {
        d.for_index: d
        for d in discount_lines_compute(
            lines=[
                ChargeLine(line.amount_minor, line.quantity * line.unit_amount_minor, line.sku_code, line.tax_category)
                for line in own
            ],
            terms=terms,
        )
    }
    out: list[InvoiceLine] = []
    for index, line in enumerate(own):
        out.append(line)
        discount_line = discount_lines.get(index)
        if discount_line is not None:
            out.append(
                InvoiceLine(
                    kind=LineKind.DISCOUNT,
                    description=discount_line.description,
                    sku_code=line.sku_code,
                    period_start=line.period_start,
                    period_end=line.period_end,
                    quantity=1,
                    unit_amount_minor=discount_line.amount_minor,
                    amount_minor=discount_line.amount_minor,
                    tax_category=line.tax_category,
                    discount_id=discount_line.discount_id,
                )
            )
    return out


def _period_lines(
    period: PeriodToBill, *, first: bool, pending: list[PendingInvoiceItem], discount=None
) -> list[InvoiceLine]:
    subscription = period.subscription
    lines: list[InvoiceLine] = []
    billed_seats = max(0, period.seats - subscription.included_seats)
    # subscriptions' terms_lines order: the plan, then additional seats (when billed), then each add-on.
    for index, preview_line in enumerate(period.lines):
        kind = LineKind.FLAT if index == 0 else (LineKind.SEATS if index == 1 and billed_seats else LineKind.ADDON)
        lines.append(
            InvoiceLine(
                kind=kind,
                description=preview_line.description,
                sku_code=preview_line.sku_code,
                period_start=preview_line.period_start,
                period_end=preview_line.period_end,
                quantity=preview_line.quantity,
                unit_amount_minor=preview_line.unit_amount_minor,
                amount_minor=preview_line.amount_minor,
                is_proration=preview_line.proration,
                tax_category=preview_line.tax_category,
            )
        )
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
    lines = _with_discount_lines(lines, discount)
    for item in pending:
        lines.append(
            InvoiceLine(kind=LineKind.DISCOUNT if item.discount_id else LineKind.PRORATION, **line_fields(item))
        )
    for position, line in enumerate(lines):
        line.position = position
    return lines


def _unbilled(as_of: datetime | None = None):
    queryset = _unbilled_shape()
    return queryset.filter(current_period_start__lte=as_of) if as_of is not None else queryset


@prebuilt
def _unbilled_shape():
    """Billable subscriptions without the regular invoice of their current period (built once per process: the
    correlated NOT EXISTS is most of the cost of building the query, run by every billing run)."""
    has_invoice = Invoice.objects.filter(
        subscription_id=OuterRef("pk"), kind=InvoiceKind.REGULAR, period_start=OuterRef("current_period_start")
    )
    return Subscription.objects.filter(status__in=BILLABLE_STATUSES).filter(~Exists(has_invoice))


# Everything drafting reads from a subscription (only these are loaded: model instances are the chunk's main cost;
# reading another field would cost a query per subscription — tests/billing/test_billing_run.py counts queries).
_DRAFTING_FIELDS = (
    "customer",
    "customer__name",
    "customer__legal_name",
    "customer__country",  # the lines' periods are written as the customer writes dates
    "price",
    "price__setup_amount_minor",
    "package",
    "interval",
    "currency",
    "flat_amount_minor",
    "seat_amount_minor",
    "included_seats",
    "seats",
    "current_period_start",
    "current_period_end",
)


def _subscriptions_for_drafting(ids: list[int], *, with_addons: bool = True) -> list[Subscription]:
    """The chunk's subscriptions with what drafting reads: customer, price, package with its components (for SKU
    codes and tax categories) and, when the lines are computed here, the live add-ons (`live_addons`). A constant
    number of queries; the few packages are loaded once, not once per subscription."""
    subscriptions = list(
        Subscription.objects.filter(pk__in=ids)
        .select_related("customer", "price")
        .only(*_DRAFTING_FIELDS)
        .order_by("pk")
    )
    addons: dict[int, list[SubscriptionAddon]] = {}
    live = (
        list(
            SubscriptionAddon.objects.filter(
                subscription_id__in=[s.pk for s in subscriptions], ended_at__isnull=True
            ).order_by("pk")
        )
        if with_addons and subscriptions
        else []
    )
    packages = {
        package.pk: package
        for package in Package.objects.filter(
            pk__in={s.package_id for s in subscriptions} | {a.package_id for a in live}
        ).prefetch_related(Prefetch("components", queryset=PackageComponent.objects.select_related("sku")))
    }
    for addon in live:
        addon.package = packages[addon.package_id]
        addons.setdefault(addon.subscription_id, []).append(addon)
    for subscription in subscriptions:
        subscription.package = packages[subscription.package_id]
        subscription.live_addons = addons.get(subscription.pk, [])
    return subscriptions


def draft_periods(*, periods: list[PeriodToBill]) -> list[int]:
    """Draft one regular invoice per period that has none yet; returns the new invoice ids.

    A constant number of queries for the whole batch. Must run inside transaction.atomic(). Periods already drafted
    (by an earlier or a concurrent run) are skipped; a concurrent insert surfaces as IntegrityError to the caller.
    """
    if not periods:
        return []
    ids = sorted({p.subscription.pk for p in periods})
    regular = list(
        Invoice.objects.filter(subscription_id__in=ids, kind=InvoiceKind.REGULAR).values_list(
            "subscription_id", "period_start", "status", "issued_at"
        )
    )
    existing = {(subscription_id, start) for subscription_id, start, _, _ in regular}
    # Voided drafts do not count: a subscription whose only invoice was voided before issue still owes set-up.
    invoiced_before = {
        subscription_id
        for subscription_id, _, status, issued_at in regular
        if not (status == InvoiceStatus.VOID and issued_at is None)
    }
    periods = sorted(
        (p for p in periods if (p.subscription.pk, p.period_start) not in existing),
        key=lambda p: (p.subscription.pk, p.period_start),
    )
    if not periods:
        return []
    pending_by_sub: dict[int, list[PendingInvoiceItem]] = {}
    for item in PendingInvoiceItem.objects.select_for_update().filter(subscription_id__in=ids, invoice__isnull=True):
        pending_by_sub.setdefault(item.subscription_id, []).append(item)
    tax_data = TaxData({p.subscription.customer_id for p in periods})
    discounts = DiscountsFor(list({p.subscription.pk: p.subscription for p in periods}.values()))
    invoices, all_lines, all_tax_lines, collected = [], [], [], []
    seen: set[int] = set()
    for period in periods:
        subscription = period.subscription
        first_in_batch = subscription.pk not in seen
        seen.add(subscription.pk)
        # Pending items go on the earliest invoice drafted for the subscription in this batch.
        pending = (
            [p for p in pending_by_sub.get(subscription.pk, []) if p.currency == subscription.currency]
            if first_in_batch
            else []
        )
        lines = _period_lines(
            period,
            first=first_in_batch and subscription.pk not in invoiced_before,
            pending=pending,
            discount=discounts.terms(subscription, period.period_start, period.period_end),
        )
        invoice = Invoice(
            customer=subscription.customer,
            subscription=subscription,
            kind=InvoiceKind.REGULAR,
            currency=subscription.currency,
            period_start=period.period_start,
            period_end=period.period_end,
            billed_seats=period.seats,
        )
        context = tax_data.context(subscription.customer_id, utc_date(period.period_start))
        result = tax_compute(lines=[(line.amount_minor, line.tax_category) for line in lines], context=context)
        tax_lines = apply_tax_result(
            invoice=invoice, lines=lines, result=result, profile=tax_data.profiles.get(subscription.customer_id)
        )
        invoices.append(invoice)
        all_lines.append(lines)
        all_tax_lines.append(tax_lines)
        collected.append(pending)
    # One INSERT per table for the whole batch (subscriptions.bulk; bulk_create spent most of the time per value).
    bulk.bulk_insert(Invoice, invoices, returning=True)
    line_rows, tax_rows, status_rows = [], [], []
    for invoice, lines, tax_lines in zip(invoices, all_lines, all_tax_lines, strict=True):
        for line in lines:
            line.invoice = invoice
            line_rows.append(line)
        for tax_line in tax_lines:
            tax_line.invoice = invoice
            tax_rows.append(tax_line)
        status_rows.append(InvoiceStatusChange(invoice=invoice, from_status="", to_status=InvoiceStatus.DRAFT))
    bulk.bulk_insert(InvoiceLine, line_rows)
    bulk.bulk_insert(InvoiceTaxLine, tax_rows)
    bulk.bulk_insert(InvoiceStatusChange, status_rows)
    for invoice, items in zip(invoices, collected, strict=True):
        if items:
            PendingInvoiceItem.objects.filter(pk__in=[i.pk for i in items]).update(invoice=invoice)
    return [invoice.pk for invoice in invoices]


def _current_period(subscription: Subscription) -> PeriodToBill:
    start, end = subscription.current_period_start, subscription.current_period_end
    return PeriodToBill(
        subscription=subscription,
        period_start=start,
        period_end=end,
        seats=subscription.seats,
        lines=terms_lines(
            _terms(subscription), period_start=start, period_end=end, locale=subscription.customer.country
        ),
    )


def _in_chunk_transaction(work, fallback_ids: list[int], single) -> list[int]:
    """Run `work()` in one transaction; on a conflict with a concurrent run, redo one subscription at a time."""
    try:
        with transaction.atomic():
            return work()
    except IntegrityError:
        created: list[int] = []
        for subscription_id in fallback_ids:
            try:
                with transaction.atomic():
                    created += single(subscription_id)
            except IntegrityError:
                logger.info("billing run: subscription %s already billed by a concurrent run", subscription_id)
        return created


def draft_chunk(*, subscription_ids: list[int]) -> list[int]:
    """Draft the current-period invoice of each billable subscription in `subscription_ids` that has none."""

    def work(ids=subscription_ids):
        subscriptions = _subscriptions_for_drafting(list(_unbilled().filter(pk__in=ids).values_list("pk", flat=True)))
        return draft_periods(periods=[_current_period(s) for s in subscriptions])

    return _in_chunk_transaction(work, subscription_ids, lambda sid: work([sid]))


def draft_due(*, as_of: datetime, chunk_size: int = DEFAULT_CHUNK) -> list[int]:
    """Draft invoices for every billable subscription whose current period started by `as_of` and has none
    (new subscriptions, and any period a failed earlier run left undrafted)."""
    created: list[int] = []
    last_id = 0
    while True:
        ids = list(_unbilled(as_of).filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return created
        created += draft_chunk(subscription_ids=ids)
        last_id = ids[-1]


def renew_chunk(*, subscription_ids: list[int], as_of: datetime) -> tuple[int, list[int]]:
    """Renew the chunk's due subscriptions (subscriptions.services.lifecycle.subscription_renew_batch: one lock
    query, set-based writes for plain renewals, the per-subscription service for scheduled changes, trials and
    cancellations; catches up every ended period) and draft one invoice per started period — in one transaction
    per chunk, so a renewal is never committed without its invoices. Returns (renewed count, new invoice ids)."""
    attempts: list[int] = []

    def work(ids=subscription_ids):
        results = subscription_renew_batch(subscription_ids=ids, as_of=as_of)
        attempts.append(len(results))
        subscriptions = {
            s.pk: s
            for s in _subscriptions_for_drafting([r.subscription_id for r in results if r.periods], with_addons=False)
        }
        periods = [
            PeriodToBill(
                subscription=subscriptions[result.subscription_id],
                period_start=period.period_start,
                period_end=period.period_end,
                seats=period.seats,
                lines=list(period.lines),
            )
            for result in results
            for period in result.periods
        ]
        return draft_periods(periods=periods)

    created = _in_chunk_transaction(work, subscription_ids, lambda sid: work([sid]))
    # After a conflict the first (rolled back) attempt is not counted.
    return sum(attempts[1:] if len(attempts) > 1 else attempts), created


def renew_due(*, as_of: datetime, chunk_size: int = DEFAULT_CHUNK) -> tuple[int, list[int]]:
    renewed, created = 0, []
    last_id = 0
    while True:
        ids = list(
            Subscription.objects.filter(pk__gt=last_id, current_period_end__lte=as_of)
            .exclude(status=SubscriptionStatus.ENDED)
            .order_by("pk")
            .values_list("pk", flat=True)[:chunk_size]
        )
        if not ids:
            return renewed, created
        count, new_ids = renew_chunk(subscription_ids=ids, as_of=as_of)
        renewed += count
        created += new_ids
        last_id = ids[-1]


def _unchecked_draft_batches(invoice_ids: list[int] | None, chunk_size: int):
    base = Invoice.objects.filter(status=InvoiceStatus.DRAFT, checks_run_at__isnull=True).order_by("pk")
    if invoice_ids is not None:
        # Slices of the (sorted) ids: after a large run the list holds every invoice drafted, and sending all of
        # them with every chunk's query would not scale.
        wanted = sorted(set(invoice_ids))
        for start in range(0, len(wanted), chunk_size):
            ids = list(base.filter(pk__in=wanted[start : start + chunk_size]).values_list("pk", flat=True))
            if ids:
                yield ids
        return
    last_id = 0
    while ids := list(base.filter(pk__gt=last_id).values_list("pk", flat=True)[:chunk_size]):
        yield ids
        last_id = ids[-1]


def finalize_chunk(*, invoice_ids: list[int]) -> tuple[int, int]:
    """Finalize one chunk of drafts set-based (`invoices_finalize_batch`: one transaction, a constant number of
    queries). Should the chunk fail as a whole (e.g. a bad row), its drafts go through `invoice_finalize` one by one
    so one bad invoice cannot hold up the others. Returns (issued, held)."""
    try:
        issued, held = invoices_finalize_batch(invoice_ids=invoice_ids)
        return len(issued), len(held)
    except Exception:
        logger.exception(
            "billing run: finalizing drafts %s..%s as a chunk failed; one by one", invoice_ids[0], invoice_ids[-1]
        )
    issued = held = 0
    for invoice_id in invoice_ids:
        try:
            invoice = invoice_finalize(invoice_id=invoice_id)
        except Exception:
            logger.exception("billing run: finalizing invoice %s failed", invoice_id)
            continue
        if invoice.status == InvoiceStatus.HELD:
            held += 1
        elif invoice.issued_at:
            issued += 1
    return issued, held


def finalize_drafts(
    *, invoice_ids: list[int] | None = None, chunk_size: int = DEFAULT_CHUNK, fan_out: bool = False
) -> tuple[int, int, int]:
    """Run the checks on drafts never checked (or on `invoice_ids`): issue or hold each, a chunk at a time, in id
    order. With `fan_out`, each chunk is handed to a Celery worker (`billing.finalize_drafts_chunk`) instead, so
    several processes share the issuing; numbers stay gapless (the sequence row is locked per chunk) but their order
    follows the order the workers commit in. Returns (issued, held, chunks queued)."""
    issued = held = queued = 0
    for ids in _unchecked_draft_batches(invoice_ids, chunk_size):
        if fan_out:
            enqueue_on_commit("billing.finalize_drafts_chunk", invoice_ids=ids)
            queued += 1
            continue
        chunk_issued, chunk_held = finalize_chunk(invoice_ids=ids)
        issued += chunk_issued
        held += chunk_held
    return issued, held, queued


def billing_run(
    *,
    as_of: datetime | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    finalize: bool = True,
    finalize_fan_out: bool = False,
) -> BillingRunResult:
    """Bill everything due by `as_of`, in order: bill mid-period changes applied without the billing wrapper; draft
    the current period of billable subscriptions that has no invoice; renew ended periods (catching up as many as
    needed) drafting one invoice per started period; finalize the new drafts (issue or hold) — here, in id order
    (deterministic: tests, the demo and `manage.py billing_run` rely on it), or with `finalize_fan_out` by queuing one
    `billing.finalize_drafts_chunk` task per chunk for the Celery workers.

    Safe to run concurrently with itself and to re-run: nothing is billed twice.
    """
    as_of = as_of or timezone.now()
    result = BillingRunResult(as_of=as_of.isoformat())
    with long_lived_objects_frozen():  # see billing/gc_frozen.py
        for step in _BEFORE_DRAFTING:
            step()
        drafted = draft_due(as_of=as_of, chunk_size=chunk_size)
        result.renewed, renewed_drafts = renew_due(as_of=as_of, chunk_size=chunk_size)
        drafted += renewed_drafts
        result.drafted = len(drafted)
        if finalize:
            result.issued, result.held, result.finalize_chunks_queued = finalize_drafts(
                invoice_ids=drafted, chunk_size=chunk_size, fan_out=finalize_fan_out
            )
    return result
