"""Mid-period changes, billed: the subscriptions work previews/applies the change; billing adds tax and bills it.

The portal and the API call these wrappers, never `subscriptions.services.changes` directly, so that
- the preview shows subtotal, tax and total of what is due now, and says how it will be billed
  ("invoice now" — an immediate proration invoice; "add to next invoice" — pending items on the next regular
  invoice), per the customer's billing profile (`change_billing_mode`);
- applying bills exactly the preview's lines (they are read back from `SubscriptionChange.result`), in the same
  transaction as the change, once: a change has at most one proration invoice (one-to-one) or one set of pending
  items, so a repeated apply (same idempotency key) or the billing run's safety net never bills it twice.

A credit (negative amount due now, e.g. an immediate downgrade) is always carried to the next invoice: an invoice
is never issued for a negative total.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

from billing.exceptions import BillingError
from billing.models import BillingProfile, ChangeBillingMode, Invoice, InvoiceKind, LineKind, PendingInvoiceItem
from billing.money import format_minor
from billing.services.billing_run import finalize_drafts, renew_chunk
from billing.services.invoices import DraftLine, invoice_draft_create, invoice_finalize
from billing.services.tax import AppliedRate, tax_compute, tax_context_for
from subscriptions import clock
from subscriptions.models import Subscription, SubscriptionChange, SubscriptionStatus, User
from subscriptions.services import changes as sub_changes

NOTHING_NOW = "none"
# kind → (preview function, apply function) in subscriptions.services.changes
KINDS = {
    "seats": ("subscription_change_seats_preview", "subscription_change_seats_apply"),
    "package": ("subscription_change_package_preview", "subscription_change_package_apply"),
    "addon_add": ("subscription_addon_add_preview", "subscription_addon_add_apply"),
    "addon_remove": ("subscription_addon_remove_preview", "subscription_addon_remove_apply"),
    "cancel": ("subscription_cancel_preview", "subscription_cancel_apply"),
    "reactivate": ("subscription_reactivate_preview", "subscription_reactivate_apply"),
}


class UnknownChangeKind(BillingError):
    code = "unknown_change_kind"
    field = "kind"


@dataclass(frozen=True)
class BilledChangePreview:
    """The subscriptions preview plus tax and how it will be billed. Amounts in minor units of `currency`."""

    preview: object  # subscriptions.services.changes.ChangePreview
    currency: str
    billing_mode: str  # "invoice_now" | "next_invoice" | "none"
    billing_message: str  # in the customer's words
    subtotal_minor: int
    tax_minor: int
    total_minor: int
    tax_lines: tuple[AppliedRate, ...] = field(default_factory=tuple)
    next_recurring_subtotal_minor: int = 0
    next_recurring_tax_minor: int = 0
    next_recurring_total_minor: int = 0
    tax_note: str = ""  # exemption / reverse-charge wording when it applies

    @property
    def version(self) -> int:
        return self.preview.version

    @property
    def lines(self):
        return self.preview.lines


@dataclass(frozen=True)
class BilledChange:
    change: SubscriptionChange
    billing_mode: str
    invoice: Invoice | None = None
    pending_items: tuple[PendingInvoiceItem, ...] = field(default_factory=tuple)


def change_billing_mode_for(*, customer_id: int) -> str:
    """The customer's chosen mode for mid-period changes (default: invoice now)."""
    mode = BillingProfile.objects.filter(customer_id=customer_id).values_list("change_billing_mode", flat=True).first()
    return mode or ChangeBillingMode.INVOICE_NOW


def _mode(customer_id: int, amount_due_now_minor: int, *, profile: BillingProfile | None | bool = False) -> str:
    """`profile`: the customer's billing profile (None: it has none) when the caller has it; False: look it up."""
    if amount_due_now_minor == 0:
        return NOTHING_NOW
    if amount_due_now_minor < 0:
        return ChangeBillingMode.NEXT_INVOICE
    if profile is False:
        return change_billing_mode_for(customer_id=customer_id)
    return (profile.change_billing_mode if profile is not None else "") or ChangeBillingMode.INVOICE_NOW


def subscriptions_for_billed_change() -> QuerySet[Subscription]:
    """`subscriptions_for_change` plus the customer's billing profile (tax location, billing mode): everything a
    billed preview reads about the subscription, in the same queries. Pass what it returns as `subscription=`."""
    return sub_changes.subscriptions_for_change().select_related("customer__billing_profile")


def _profile_of(subscription: Subscription) -> BillingProfile | None:
    try:
        return subscription.customer.billing_profile
    except ObjectDoesNotExist:
        return None


def _message(mode: str, total_minor: int, currency: str, next_date: datetime) -> str:
    amount = format_minor(abs(total_minor), currency)
    if mode == NOTHING_NOW:
        return "Nothing is charged now."
    if total_minor < 0:
        return f"A credit of {amount} will be applied to your next invoice on {next_date:%d %b %Y}."
    if mode == ChangeBillingMode.INVOICE_NOW:
        return f"We will invoice {amount} now."
    return f"{amount} will be added to your next invoice on {next_date:%d %b %Y}."


def _functions(kind: str):
    try:
        preview_name, apply_name = KINDS[kind]
    except KeyError:
        raise UnknownChangeKind(f"Unknown change {kind!r}; expected one of {', '.join(KINDS)}.")
    return getattr(sub_changes, preview_name), getattr(sub_changes, apply_name)


def change_preview_billed(*, preview, subscription: Subscription | None = None) -> BilledChangePreview:
    """Add tax and the billing mode to a subscriptions `ChangePreview` (no writes). `subscription`: the previewed
    subscription as loaded by `subscriptions_for_billed_change` (its billing profile is reused), else loaded here."""
    if subscription is None or subscription.pk != preview.subscription_id:
        subscription = Subscription.objects.select_related("customer__billing_profile").get(pk=preview.subscription_id)
    profile = _profile_of(subscription)
    context = tax_context_for(customer_id=subscription.customer_id, profile=profile, tax_date=clock.today())
    result = tax_compute(lines=[(line.amount_minor, line.tax_category) for line in preview.lines], context=context)
    categories = {line.tax_category for line in preview.lines} or {"saas"}
    # The next recurring amount's tax, estimated with the category of this change's lines (the recurring SKUs).
    recurring = tax_compute(lines=[(preview.next_recurring_amount_minor, sorted(categories)[0])], context=context)
    mode = _mode(subscription.customer_id, preview.amount_due_now_minor, profile=profile)
    return BilledChangePreview(
        preview=preview,
        currency=preview.currency,
        billing_mode=mode,
        billing_message=_message(mode, result.total_minor, preview.currency, subscription.current_period_end),
        subtotal_minor=result.subtotal_minor,
        tax_minor=result.tax_minor,
        total_minor=result.total_minor,
        tax_lines=tuple(result.tax_lines),
        next_recurring_subtotal_minor=recurring.subtotal_minor,
        next_recurring_tax_minor=recurring.tax_minor,
        next_recurring_total_minor=recurring.total_minor,
        tax_note=context.exemption_wording or context.reverse_charge_wording,
    )


def change_preview(
    *, subscription_id: int, kind: str, subscription: Subscription | None = None, **params
) -> BilledChangePreview:
    """Preview a change with tax and billing mode. `kind`: seats (seats=), package (package_slug=, interval=, seats=),
    addon_add / addon_remove (addon_slug=), cancel (reason=), reactivate. Raises SubscriptionError subclasses for bad
    input, exactly as the subscriptions services do.

    The subscription is loaded once (`subscriptions_for_billed_change`) and shared by the subscriptions preview and
    the tax; a caller that loaded it already that way (e.g. to check it belongs to the customer) passes it as
    `subscription`."""
    preview_fn, _ = _functions(kind)
    if subscription is None and isinstance(subscription_id, int) and not isinstance(subscription_id, bool):
        subscription = subscriptions_for_billed_change().filter(pk=subscription_id).first()
    if subscription is not None and _renew_if_period_over(subscription, params.get("at") or clock.now()):
        subscription = subscriptions_for_billed_change().filter(pk=subscription_id).first()
    # None here (no such subscription): the subscriptions service raises its own "does not exist" error.
    preview = preview_fn(subscription_id=subscription_id, subscription=subscription, **params)
    return change_preview_billed(preview=preview, subscription=subscription)


def change_apply(
    *,
    subscription_id: int,
    kind: str,
    expected_version: int,
    actor: User | None,
    idempotency_key: str | None = None,
    expected_amount_due_minor: int | None = None,
    actor_kind: str | None = None,
    **params,
) -> BilledChange:
    """Apply a previewed change and bill it in the same transaction (see module docstring). Idempotent with
    `idempotency_key`: a repeated apply returns the first change and its existing invoice/pending items."""
    _, apply_fn = _functions(kind)
    if isinstance(subscription_id, int) and not isinstance(subscription_id, bool):
        current = Subscription.objects.filter(pk=subscription_id).only("current_period_end", "status").first()
        if current is not None:
            _renew_if_period_over(current, params.get("at") or clock.now())
    with transaction.atomic():
        change = apply_fn(
            subscription_id=subscription_id,
            expected_version=expected_version,
            idempotency_key=idempotency_key,
            expected_amount_due_minor=expected_amount_due_minor,
            actor=actor,
            actor_kind=actor_kind,
            **params,
        )
        if not _draft_lines(change):
            # No line with an amount (cancel, undo, a change at the period end…): there is nothing to bill, now or
            # ever, so no invoice or pending item to look for either.
            return BilledChange(change=change, billing_mode=NOTHING_NOW)
        billed = change_bill(subscription_change_id=change.pk, actor=actor)
    return billed


def _renew_if_period_over(subscription: Subscription, at: datetime) -> bool:
    """A change that arrives after the period end (say 00:10 on the 1st, before the billing run got to it) first
    renews that subscription on demand — with the billing run's own renewal (`renew_chunk`: the same renewal rule,
    one invoice drafted per started period, in one transaction) and its finalization — and then applies to the new
    period. Idempotent: a concurrent run or change that renewed first leaves nothing to do. True when it renewed."""
    if subscription.current_period_end > at or subscription.status == SubscriptionStatus.ENDED:
        return False
    renewed, drafted = renew_chunk(subscription_ids=[subscription.pk], as_of=at)
    if drafted:
        finalize_drafts(invoice_ids=drafted)
    return bool(renewed)


def _parse(value):
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(value)


def _draft_lines(change: SubscriptionChange) -> list[DraftLine]:
    return [
        DraftLine(
            description=line["description"],
            unit_amount_minor=int(line.get("unit_amount_minor", line["amount_minor"])),
            quantity=int(line.get("quantity", 1)),
            amount_minor=int(line["amount_minor"]),
            kind=LineKind.PRORATION,
            sku_code=line.get("sku_code", ""),
            tax_category=line.get("tax_category") or "saas",
            period_start=_parse(line.get("period_start")),
            period_end=_parse(line.get("period_end")),
            is_proration=bool(line.get("proration", True)),
            subscription_change_id=change.pk,
        )
        for line in (change.result or {}).get("lines", [])
        if int(line.get("amount_minor", 0)) != 0
    ]


def change_bill(*, subscription_change_id: int, actor: User | None = None) -> BilledChange:
    """Bill one applied change exactly as previewed; idempotent (a billed change returns its existing billing).

    invoice now → a proration invoice (kind "proration") run through the pre-issue checks at once;
    add to next invoice (or any credit) → pending invoice items the next regular invoice collects.
    """
    with transaction.atomic():
        change = (
            SubscriptionChange.objects.select_for_update()
            .select_related("subscription", "subscription__customer")
            .get(pk=subscription_change_id)
        )
        lines = _draft_lines(change)
        if not lines:  # nothing to bill: never invoiced, never pending
            return BilledChange(change=change, billing_mode=NOTHING_NOW)
        existing_invoice = Invoice.objects.filter(subscription_change=change).first()
        if existing_invoice is not None:
            return BilledChange(change=change, billing_mode=ChangeBillingMode.INVOICE_NOW, invoice=existing_invoice)
        existing_items = tuple(PendingInvoiceItem.objects.filter(subscription_change=change))
        if existing_items:
            return BilledChange(
                change=change, billing_mode=ChangeBillingMode.NEXT_INVOICE, pending_items=existing_items
            )
        subscription = change.subscription
        mode = _mode(subscription.customer_id, change.amount_due_now_minor)
        if mode == NOTHING_NOW:
            return BilledChange(change=change, billing_mode=NOTHING_NOW)
        if mode == ChangeBillingMode.INVOICE_NOW:
            starts = [line.period_start for line in lines if line.period_start]
            ends = [line.period_end for line in lines if line.period_end]
            invoice = invoice_draft_create(
                customer=subscription.customer,
                subscription=subscription,
                kind=InvoiceKind.PRORATION,
                currency=change.currency,
                period_start=min(starts) if starts else change.effective_at,
                period_end=max(ends) if ends else subscription.current_period_end,
                subscription_change=change,
                lines=lines,
                actor=actor,
            )
            invoice = invoice_finalize(invoice_id=invoice.pk, actor=actor)
            return BilledChange(change=change, billing_mode=mode, invoice=invoice)
        items = PendingInvoiceItem.objects.bulk_create(
            PendingInvoiceItem(
                customer_id=subscription.customer_id,
                subscription=subscription,
                subscription_change=change,
                description=line.description,
                sku_code=line.sku_code,
                period_start=line.period_start,
                period_end=line.period_end,
                quantity=line.quantity,
                unit_amount_minor=line.unit_amount_minor,
                amount_minor=line.amount,
                currency=change.currency,
                is_proration=line.is_proration,
                tax_category=line.tax_category,
            )
            for line in lines
        )
        return BilledChange(change=change, billing_mode=mode, pending_items=tuple(items))


def changes_bill_unbilled(*, since: datetime | None = None) -> int:
    """Safety net run by the billing run: bill every change with an amount due that was applied without the wrapper
    (e.g. directly through subscriptions services). Returns how many were billed."""
    queryset = (
        SubscriptionChange.objects.exclude(amount_due_now_minor=0)
        .filter(proration_invoice__isnull=True, pending_items__isnull=True)
        .order_by("pk")
    )
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    count = 0
    for change_id in list(queryset.values_list("pk", flat=True).distinct()):
        billed = change_bill(subscription_change_id=change_id)
        count += billed.billing_mode != NOTHING_NOW
    return count
