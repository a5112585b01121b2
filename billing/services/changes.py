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
from django.db.models import Exists, OuterRef, QuerySet
from django.utils.dateparse import parse_datetime

from billing.estimates import package_skus_cached, tax_rates_cached
from billing.exceptions import BillingError
from billing.models import (
    BillingProfile,
    ChangeBillingMode,
    Invoice,
    InvoiceKind,
    LineKind,
    PendingInvoiceItem,
    TaxExemption,
)
from billing.services import discounts
from billing.services.billing_run import finalize_drafts, renew_chunk
from billing.services.discounts import ChargeLine, DiscountLine, DiscountTerms
from billing.services.invoices import DraftLine, invoice_draft_create, invoice_finalize, line_fields
from billing.services.tax import AppliedRate, tax_compute, tax_context_for, tax_rates_for
from subscriptions import clock
from subscriptions.models import Package, Subscription, SubscriptionChange, SubscriptionStatus, User
from subscriptions.money import format_date, format_money
from subscriptions.prebuilt import prebuilt
from subscriptions.selectors import package_skus
from subscriptions.services import changes as sub_changes
from subscriptions.services.changes.kinds import CHANGE_KINDS
from subscriptions.services.terms import terms_current, terms_lines

NOTHING_NOW = "none"
# kind → (preview function, apply function) in subscriptions.services.changes, from the one registry
KINDS = {name: (spec.preview_name, spec.apply_name) for name, spec in CHANGE_KINDS.items()}


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
    # Discounts (docs/billing-rules.md, "Discounts"): one line after each discounted line; subtotal and tax above
    # are of the discounted amounts.
    discount_lines: tuple[DiscountLine, ...] = field(default_factory=tuple)
    discount_minor: int = 0  # sum of the discount lines (≤ 0 on charges)
    discount_description: str = ""  # "Launch 20 (20 % off), until 1 Mar 2027"
    discount_ends_at: datetime | None = None
    promotion_code: str = ""  # the code previewed (not yet redeemed), if any
    next_recurring_discount_minor: int = 0

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


def subscriptions_for_billed_change(*, skus: bool = True) -> QuerySet[Subscription]:
    """`subscriptions_for_change` plus the customer's billing profile (tax location, billing mode): everything a
    billed preview reads about the subscription, in the same queries. Pass what it returns as `subscription=`.

    `skus=False` is the lean read path of a live preview (one per keystroke): no SKU subqueries; `change_preview`
    takes the package and add-on SKUs from the per-package cache of `billing.estimates` (never stale: it is keyed
    by the catalog token every Sku/PackageComponent save or delete renews), and skips the exemption query for a
    customer with none (`billing_has_exemption`, read in the same query).

    Built once per process (`subscriptions.prebuilt`); each call returns a clone."""
    return _billed_change_shape(skus)


@prebuilt
def _billed_change_shape(skus: bool) -> QuerySet[Subscription]:
    queryset = (
        sub_changes.subscriptions_for_change(skus=skus)
        .select_related("customer__billing_profile")
        .annotate(**discounts.has_discount_annotation())
    )
    if not skus:  # the lean preview also knows whether the customer has any exemption (else no exemption query)
        queryset = queryset.annotate(
            billing_has_exemption=Exists(TaxExemption.objects.filter(customer_id=OuterRef("customer_id")))
        )
    return queryset


_TAX_CONTEXT = "billing_tax_context"


def change_preview_inputs_load(subscription: Subscription) -> Subscription:
    """Give a subscription loaded by the lean shape (`subscriptions_for_billed_change(skus=False)`) everything else a
    preview reads — its package's and add-ons' SKUs and today's tax context (location, rates, approved exemption) —
    read now from the database, so that `change_preview` of it runs no SKU, rate or exemption query. For a caller
    that keeps the loaded subscription while nothing it was read from changes (the portal's live seat preview,
    cached under the customer's data version): the preview itself is computed per call, for its own parameters."""
    unannotated = sub_changes.change_package_ids(subscription)
    if unannotated:
        sub_changes.change_skus_remember(subscription, package_skus(package_ids=unannotated))
    today = clock.today()
    subscription.__dict__[_TAX_CONTEXT] = (
        today,
        tax_context_for(
            customer_id=subscription.customer_id,
            profile=_profile_of(subscription),
            tax_date=today,
            check_exemptions=subscription.__dict__.get("billing_has_exemption", True),
        ),
    )
    return subscription


def _profile_of(subscription: Subscription) -> BillingProfile | None:
    try:
        return subscription.customer.billing_profile
    except ObjectDoesNotExist:
        return None


def _message(mode: str, total_minor: int, currency: str, next_date: datetime, where: str) -> str:
    """What the change costs, in the customer's words: amount and date as `where` (the customer's country) writes
    them."""
    amount = format_money(abs(total_minor), currency, where)
    if mode == NOTHING_NOW:
        return "Nothing is charged now."
    if total_minor < 0:
        return f"A credit of {amount} will be applied to your next invoice on {format_date(next_date, where)}."
    if mode == ChangeBillingMode.INVOICE_NOW:
        return f"We will invoice {amount} now."
    return f"{amount} will be added to your next invoice on {format_date(next_date, where)}."


def _functions(kind: str):
    try:
        preview_name, apply_name = KINDS[kind]
    except KeyError:
        raise UnknownChangeKind(f"Unknown change {kind!r}; expected one of {', '.join(KINDS)}.")
    return getattr(sub_changes, preview_name), getattr(sub_changes, apply_name)


def _charge_lines(lines) -> list[ChargeLine]:
    """ChargeLines from preview lines (PreviewLine objects or their stored dicts)."""
    out = []
    for line in lines:
        get = line.get if isinstance(line, dict) else (lambda name, default=None, _l=line: getattr(_l, name, default))
        amount = int(get("amount_minor", 0))
        quantity = int(get("quantity", 1) or 1)
        unit = int(get("unit_amount_minor", amount))
        out.append(
            ChargeLine(
                amount_minor=amount,
                full_amount_minor=quantity * unit or amount,
                sku_code=get("sku_code", "") or "",
                tax_category=get("tax_category", "") or "saas",
            )
        )
    return out


def _eligible_before(subscription: Subscription, terms: DiscountTerms | None) -> int:
    """The eligible recurring amount per period before a change: what the period's fixed discount already covers.
    Only fixed-amount discounts need it (a percentage works line by line)."""
    if terms is None or terms.kind != "fixed":
        return 0
    current = terms_current(subscription, addons=subscription.__dict__.get("change_live_addons"))
    lines = terms_lines(
        current,
        period_start=subscription.current_period_start,
        period_end=subscription.current_period_end,
        locale=subscription.customer.country,
    )
    return discounts.eligible_recurring_minor(terms_lines=lines, discount_terms=terms)


def _change_discount_terms(subscription: Subscription, at: datetime) -> DiscountTerms | None:
    """The discount applying to a change made at `at`: the one active at that instant (the one coverage rule)."""
    if subscription.__dict__.get(discounts.HAS_DISCOUNT) is False:  # annotated: no discount at all, no query
        return None
    return discounts.DiscountsFor([subscription]).terms(subscription, at)


def _new_term(preview) -> tuple[datetime, datetime] | None:
    """The new term an immediate change of billing interval starts (monthly → annual), as its lines bill it: the
    subscription after the change is in that term, not yet invoiced by a regular invoice (its proration invoice
    bills it). None for every other change."""
    if not preview.immediate or not preview.current_interval or preview.recurring_interval == preview.current_interval:
        return None
    for line in preview.lines:
        if not line.proration and line.amount_minor > 0:
            return line.period_start, line.period_end
    return None


def _next_recurring_discount(terms: DiscountTerms | None, amount_minor: int, next_start: datetime) -> int:
    # Estimated on the whole recurring amount: exact for coupons on everything (the usual case); a coupon limited to
    # some packages is shown on the next invoice's own preview (dashboard, discounts preview) line by line.
    if terms is None or not terms.applies_to_all or not terms.active_at(next_start):
        return 0
    lines = discounts.discount_lines_compute(lines=[ChargeLine(amount_minor, amount_minor)], terms=terms)
    return sum(line.amount_minor for line in lines)


def change_preview_billed(
    *,
    preview,
    subscription: Subscription | None = None,
    discount_terms: DiscountTerms | None | bool = False,
    eligible_before_minor: int | None = None,
    promotion_code: str = "",
) -> BilledChangePreview:
    """Add discounts, tax and the billing mode to a subscriptions `ChangePreview` (no writes). `subscription`: the
    previewed subscription as loaded by `subscriptions_for_billed_change` (its billing profile is reused), else
    loaded here. `discount_terms`: the discount to show (a promotion code being previewed), None for none, False
    for the subscription's own discount covering the change."""
    if subscription is None or subscription.pk != preview.subscription_id:
        subscription = subscriptions_for_billed_change().get(pk=preview.subscription_id)
    profile = _profile_of(subscription)
    if discount_terms is False:
        discount_terms = _change_discount_terms(subscription, preview.effective_at) if preview.lines else None
    elif discount_terms is not None and not discount_terms.active_at(preview.effective_at):
        discount_terms = None  # a previewed code is held to the same rule as a redeemed one
    charge_lines = _charge_lines(preview.lines)
    if eligible_before_minor is None:
        eligible_before_minor = _eligible_before(subscription, discount_terms) if preview.lines else 0
    discount_lines = discounts.discount_lines_compute(
        lines=charge_lines, terms=discount_terms, eligible_before_minor=eligible_before_minor
    )
    lean = "billing_has_exemption" in subscription.__dict__  # loaded by the live preview's lean shape
    today = clock.today()
    loaded = subscription.__dict__.get(_TAX_CONTEXT)  # change_preview_inputs_load: today's, read with the rest
    if loaded is not None and loaded[0] == today:
        context = loaded[1]
    else:
        context = tax_context_for(
            customer_id=subscription.customer_id,
            profile=profile,
            tax_date=today,
            check_exemptions=subscription.billing_has_exemption if lean else True,
            # under the rates token: no rate query per keystroke; whatever bills a change reads the rates itself
            rates=tax_rates_cached if lean else tax_rates_for,
        )
    result = tax_compute(
        lines=[(line.amount_minor, line.tax_category) for line in preview.lines]
        + [(line.amount_minor, line.tax_category) for line in discount_lines],
        context=context,
    )
    categories = {line.tax_category for line in preview.lines} or {"saas"}
    new_term = _new_term(preview)
    next_start = new_term[1] if new_term else subscription.current_period_end
    next_discount = _next_recurring_discount(discount_terms, preview.next_recurring_amount_minor, next_start)
    # The next recurring amount's tax, estimated with the category of this change's lines (the recurring SKUs).
    recurring = tax_compute(
        lines=[(preview.next_recurring_amount_minor + next_discount, sorted(categories)[0])], context=context
    )
    discount_minor = sum(line.amount_minor for line in discount_lines)
    mode = _mode(subscription.customer_id, preview.amount_due_now_minor + discount_minor, profile=profile)
    return BilledChangePreview(
        preview=preview,
        currency=preview.currency,
        billing_mode=mode,
        billing_message=_message(
            mode, result.total_minor, preview.currency, subscription.current_period_end, subscription.customer.country
        ),
        subtotal_minor=result.subtotal_minor,
        tax_minor=result.tax_minor,
        total_minor=result.total_minor,
        tax_lines=tuple(result.tax_lines),
        next_recurring_subtotal_minor=recurring.subtotal_minor,
        next_recurring_tax_minor=recurring.tax_minor,
        next_recurring_total_minor=recurring.total_minor,
        tax_note=context.exemption_wording or context.reverse_charge_wording,
        discount_lines=tuple(discount_lines),
        discount_minor=discount_minor,
        discount_description=(
            discounts.discount_describe(discount_terms, preview.currency, subscription.customer.country)
            if discount_terms
            else ""
        ),
        discount_ends_at=discount_terms.ends_at if discount_terms else None,
        promotion_code=promotion_code,
        next_recurring_discount_minor=next_discount,
    )


def _target(kind: str, subscription: Subscription, params: dict) -> tuple[int | None, set[int] | None, str | None]:
    """(seats, package ids, interval) the subscription has after the previewed change, for a promotion code's
    minimum-seat and package conditions."""
    seats = params.get("seats") if kind in ("seats", "package") else None
    seats = seats if isinstance(seats, int) and not isinstance(seats, bool) else None
    package_ids = None
    if kind == "package" and isinstance(params.get("package_slug"), str):
        package_ids = set(Package.objects.filter(slug=params["package_slug"]).values_list("pk", flat=True))
        addon_ids = set(subscription.addons.filter(ended_at__isnull=True).values_list("package_id", flat=True))
        package_ids |= addon_ids
    if kind == "addon_add" and isinstance(params.get("addon_slug"), str):
        package_ids = {subscription.package_id} | set(
            Package.objects.filter(slug=params["addon_slug"]).values_list("pk", flat=True)
        )
        package_ids |= set(subscription.addons.filter(ended_at__isnull=True).values_list("package_id", flat=True))
    interval = params.get("interval") if kind == "package" and isinstance(params.get("interval"), str) else None
    return seats, package_ids, interval


def change_preview(
    *,
    subscription_id: int,
    kind: str,
    subscription: Subscription | None = None,
    promotion_code: str | None = None,
    customer_key: str = "",
    ip: str = "",
    **params,
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
    unannotated = sub_changes.change_package_ids(subscription) if subscription is not None else set()
    if unannotated:  # loaded by the lean shape: the SKUs come from the per-package cache
        sub_changes.change_skus_remember(subscription, package_skus_cached(package_ids=unannotated))
    # None here (no such subscription): the subscriptions service raises its own "does not exist" error.
    preview = preview_fn(subscription_id=subscription_id, subscription=subscription, **params)
    if subscription is None:
        subscription = subscriptions_for_billed_change().get(pk=preview.subscription_id)
    if discounts.normalize_code(promotion_code):
        seats, package_ids, interval = _target(kind, subscription, params)
        candidate = discounts.promotion_code_validate(
            code=promotion_code,
            customer=subscription.customer,
            subscription=subscription,
            customer_key=customer_key,
            ip=ip,
            # the change's own instant: a clock that ticks between the preview and this check must not put the
            # code's start after the change it is previewed with (the coverage rule compares the two)
            at=params.get("at") or (preview.effective_at if preview.immediate else None),
            seats=seats,
            package_ids=package_ids,
            interval=interval,
            new_period_start=(_new_term(preview) or (None,))[0],
        )
        return change_preview_billed(
            preview=preview,
            subscription=subscription,
            discount_terms=candidate.terms,
            promotion_code=candidate.promotion_code.code,
        )
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
    promotion_code: str | None = None,
    customer_key: str = "",
    ip: str = "",
    **params,
) -> BilledChange:
    """Apply a previewed change and bill it in the same transaction (see module docstring). Idempotent with
    `idempotency_key`: a repeated apply returns the first change and its existing invoice/pending items.

    `promotion_code`: redeemed in the same transaction, after the change (its seat and package conditions are
    checked on the subscription as changed); a refused code rolls the change back. The change's discount lines are
    computed under the subscription lock and stored on `SubscriptionChange.result["discount_lines"]`, so billing
    bills exactly what the preview showed."""
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
        # A change applied before (same idempotency key) carries its discount lines already: never redeem twice.
        first_apply = "discount_lines" not in (change.result or {})
        # Written just now, in this transaction: nothing can have billed it yet, and it comes with the subscription
        # its apply locked and wrote (no need to read that, or look for its invoice or pending items, again).
        new = sub_changes.change_applied_now(change)
        code = discounts.normalize_code(promotion_code)
        if first_apply and (code or (change.result or {}).get("lines")):
            if new and not code:
                subscription = change.subscription
            else:  # a code's conditions are checked on the subscription as read back after the change
                subscription = Subscription.objects.select_related("customer").get(pk=change.subscription_id)
            if code:
                discounts.discount_redeem(
                    customer=subscription.customer,
                    subscription=subscription,
                    promotion_code=code,
                    actor=actor,
                    customer_key=customer_key,
                    ip=ip,
                    # redeemed as of the change's own instant when it has begun (the clock ticked since it was
                    # taken): a discount starting after the change would not apply to its lines (the coverage rule)
                    at=params.get("at") or min(change.effective_at, clock.now()),
                )
            _store_discount_lines(change, subscription, always=bool(code))
        if not _draft_lines(change):
            # No line with an amount (cancel, undo, a change at the period end…): there is nothing to bill, now or
            # ever, so no invoice or pending item to look for either.
            return BilledChange(change=change, billing_mode=NOTHING_NOW)
        if new:  # its discount lines are stored just above (its lock is this transaction's)
            return _bill_and_settle(change, actor, new=True)
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


def _store_discount_lines(change: SubscriptionChange, subscription: Subscription, *, always: bool) -> None:
    """Compute the applied change's discount lines exactly as its preview did and store them on the change.

    The preview took the fixed amount's allowance from the eligible recurring amount before the change; here the
    subscription is already changed, and that amount is the one after it less the change's own eligible lines at
    their full-period prices (every immediate change moves the recurring amount by exactly those)."""
    lines = (change.result or {}).get("lines", [])
    terms = None
    if lines:
        terms = discounts.DiscountsFor([subscription]).terms(subscription, change.effective_at)
    if terms is None and not always:
        return
    charge_lines = _charge_lines(lines)
    eligible_before = 0
    if terms is not None and terms.kind == "fixed":
        after = terms_lines(
            terms_current(subscription),
            period_start=subscription.current_period_start,
            period_end=subscription.current_period_end,
            locale=subscription.customer.country,
        )
        eligible_before = discounts.eligible_recurring_minor(terms_lines=after, discount_terms=terms) - sum(
            line.full_amount_minor for line in charge_lines if terms.applies_to(line.sku_code)
        )
    discount_lines = discounts.discount_lines_compute(
        lines=charge_lines, terms=terms, eligible_before_minor=eligible_before
    )
    change.result = {**(change.result or {}), "discount_lines": [line.to_dict() for line in discount_lines]}
    SubscriptionChange.objects.filter(pk=change.pk).update(result=change.result)


def _parse(value):
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(value)


def _draft_lines(change: SubscriptionChange) -> list[DraftLine]:
    """The change's lines with, after each discounted one, its discount line (as stored by `change_apply`)."""
    result = change.result or {}
    lines = _change_lines(change)
    by_index: dict[int, list[dict]] = {}
    for discount_line in result.get("discount_lines", []):
        by_index.setdefault(int(discount_line["for_index"]), []).append(discount_line)
    out: list[DraftLine] = []
    for index, (line, draft) in enumerate(zip(result.get("lines", []), lines, strict=True)):
        if draft is not None:
            out.append(draft)
        for discount_line in by_index.get(index, []):
            amount = int(discount_line["amount_minor"])
            out.append(
                DraftLine(
                    description=discount_line["description"],
                    unit_amount_minor=amount,
                    amount_minor=amount,
                    kind=LineKind.DISCOUNT,
                    sku_code=discount_line.get("sku_code", ""),
                    tax_category=discount_line.get("tax_category") or "saas",
                    period_start=_parse(line.get("period_start")),
                    period_end=_parse(line.get("period_end")),
                    is_proration=bool(line.get("proration", True)),
                    subscription_change_id=change.pk,
                    discount_id=discount_line.get("discount_id"),
                )
            )
    return out


def _change_lines(change: SubscriptionChange) -> list[DraftLine | None]:
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
        if int(line.get("amount_minor", 0)) != 0
        else None
        for line in (change.result or {}).get("lines", [])
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
        return _bill_and_settle(change, actor)


def _bill_and_settle(change: SubscriptionChange, actor: User | None, *, new: bool = False) -> BilledChange:
    """Bill the locked change (inside its transaction) and mark its billing settled. `new`: written in this
    transaction by `change_apply`, which stored its discount lines (`change_applied_now`)."""
    billed = _bill_locked(change, actor, new=new)
    if change.billing_settled_at is None:
        # Billed (or nothing to bill) in this transaction: the safety net need never look at it again.
        change.billing_settled_at = clock.now()
        SubscriptionChange.objects.filter(pk=change.pk).update(billing_settled_at=change.billing_settled_at)
    return billed


def _bill_locked(change: SubscriptionChange, actor: User | None, *, new: bool = False) -> BilledChange:
    """`change_bill` on the locked change (inside its transaction). A `new` change has its discount lines and no
    billing yet: nothing to look up first."""
    if not new and "discount_lines" not in (change.result or {}) and (change.result or {}).get("lines"):
        # Applied without the wrapper (e.g. staff through the subscriptions admin): its discount is worked out
        # now, the same way, from the subscription as it stands.
        subscription = Subscription.objects.select_related("customer").get(pk=change.subscription_id)
        _store_discount_lines(change, subscription, always=False)
    lines = _draft_lines(change)
    if not lines:  # nothing to bill: never invoiced, never pending
        return BilledChange(change=change, billing_mode=NOTHING_NOW)
    if not new:
        existing_invoice = Invoice.objects.filter(subscription_change=change).first()
        if existing_invoice is not None:
            return BilledChange(change=change, billing_mode=ChangeBillingMode.INVOICE_NOW, invoice=existing_invoice)
        existing_items = tuple(PendingInvoiceItem.objects.filter(subscription_change=change))
        if existing_items:
            return BilledChange(
                change=change, billing_mode=ChangeBillingMode.NEXT_INVOICE, pending_items=existing_items
            )
    subscription = change.subscription
    mode = _mode(subscription.customer_id, sum(line.amount for line in lines))
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
            recompute=False,  # finalized at once in this transaction, which computes the tax (once)
        )
        invoice = invoice_finalize(invoice_id=invoice.pk, actor=actor)
        return BilledChange(change=change, billing_mode=mode, invoice=invoice)
    items = PendingInvoiceItem.objects.bulk_create(
        PendingInvoiceItem(
            customer_id=subscription.customer_id,
            subscription=subscription,
            currency=change.currency,
            **{**line_fields(line), "amount_minor": line.amount, "subscription_change_id": change.pk},
        )
        for line in lines
    )
    return BilledChange(change=change, billing_mode=mode, pending_items=tuple(items))


def changes_bill_unbilled(*, since: datetime | None = None) -> int:
    """Safety net run by the billing run: bill every change with an amount due that was applied without the wrapper
    (e.g. directly through subscriptions services), or whose billing was lost. Returns how many were billed.

    Reads only the changes billing has not settled (`SubscriptionChange.billing_settled_at`, set by `change_bill` in
    the transaction that bills the change; a partial index holds just those with an amount), so a run costs the
    changes still to bill, not every change ever made. One that already has its invoice or pending items (billed
    some other way) is marked settled without being billed again."""
    queryset = (
        SubscriptionChange.objects.filter(billing_settled_at__isnull=True)
        .exclude(amount_due_now_minor=0)  # with the line above: the partial index subscription_change_unsettled
        .order_by("pk")
    )
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    candidates = list(queryset.values_list("pk", flat=True))
    if not candidates:
        return 0  # the usual run: one query
    already = set(
        Invoice.objects.filter(subscription_change_id__in=candidates).values_list("subscription_change_id", flat=True)
    ) | set(
        PendingInvoiceItem.objects.filter(subscription_change_id__in=candidates).values_list(
            "subscription_change_id", flat=True
        )
    )
    if already:
        SubscriptionChange.objects.filter(pk__in=already, billing_settled_at__isnull=True).update(
            billing_settled_at=clock.now()
        )
    count = 0
    for change_id in candidates:
        if change_id in already:
            continue
        billed = change_bill(subscription_change_id=change_id)
        count += billed.billing_mode != NOTHING_NOW
    return count
