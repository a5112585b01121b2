"""Read-side assembly for the dashboard: a fixed number of queries whatever the number of members or invoices."""

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Count, Exists, OuterRef, Prefetch, Subquery, Sum
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from billing.estimates import LineSource, exemption_stamp_annotations, next_invoice_estimates
from billing.models import Invoice, InvoiceKind, InvoiceStatus, PendingInvoiceItem
from billing.selectors import (
    billing_nudge_annotations,
    billing_nudges_for_customer,
    exemption_expiring_from,
    overdue_from_nudges,
    unpaid_invoice_from,
)
from billing.services.discounts import HAS_DISCOUNT, has_discount_annotation, next_invoice_preview
from billing.services.payments import BACKEND_STRIPE, payment_backend
from portal.prebuilt import prebuilt
from subscriptions import clock
from subscriptions.clock import utc_date
from subscriptions.models import (
    LIVE_STATUSES,
    AuditEvent,
    Membership,
    SeatAssignment,
    SkuKind,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.money import format_date
from subscriptions.selectors import enablement_status

# The statuses the billing run invoices (billing.services.billing_run.BILLABLE_STATUSES).
BILLABLE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)

ACTIVE_STATES = {"active", "applied", "done", "enabled", "succeeded"}


@dataclass
class EnablementItem:
    name: str
    state: str
    label: str
    detail: str = ""

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass
class Enablement:
    items: list[EnablementItem] = field(default_factory=list)
    known: bool = True
    state: str = ""  # from provisioning: active | pending | failed | none
    detail: str = ""

    @property
    def all_active(self) -> bool:
        """Stop polling: everything is on, or there is nothing to switch on and nothing in flight."""
        if self.state:
            return self.state in ("active", "none")
        return all(item.is_active for item in self.items)

    @property
    def active_count(self) -> int:
        return sum(item.is_active for item in self.items)


def _attr(obj, *names, default=None):
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def enablement_for(*, customer) -> Enablement:
    """Adapts `subscriptions.selectors.enablement_status` (the provisioning work) to what the panel shows."""
    raw = enablement_status(customer=customer)
    rows = _attr(raw, "items", "entitlements", "features", default=raw)
    items = []
    for row in rows or []:
        state = str(_attr(row, "state", "status", default="pending"))
        items.append(
            EnablementItem(
                name=str(_attr(row, "name", "label", "feature_name", "feature_key", "feature", default="")),
                state=state,
                label=str(_attr(row, "state_label", "status_label", default=state.replace("_", " ").capitalize())),
                detail=str(_attr(row, "detail", "message", "last_error", default="") or ""),
            )
        )
    state = _attr(raw, "state", default="")
    detail = ""
    if state == "failed":
        detail = str(_attr(raw, "last_error", default="") or "")
    elif state == "pending":
        since = _attr(raw, "pending_since", default=None)
        detail = f"Started {timezone.localtime(since):%H:%M}" if since else ""
    return Enablement(items=items, state=str(state or ""), detail=detail)


def next_invoice_lines(sub: Subscription, now: datetime) -> tuple[datetime, date, list[LineSource], int]:
    """(when, tax date, line sources, set-up fee included) of the subscription's next regular invoice, the way the
    billing run will draft it (billing/services/billing_run.py). A line source is (amount_minor, package id, SKU
    kind): its tax category is that package's SKU of that kind (`billing.estimates`).

    A billable subscription whose current period has no invoice yet (just subscribed) gets that period's invoice at
    the next billing run; otherwise the next invoice is for the period starting at `current_period_end`. Either way it
    is a full period at the current terms (flat fee, seats above those included, each live add-on), plus the
    one-time set-up fee when it is the subscription's first invoice (e.g. the one after a trial). Expects the
    annotations and prefetch of `dashboard_context`.
    """
    if sub.status in BILLABLE_STATUSES and not sub.current_period_invoiced:
        when, tax_date = now, utc_date(sub.current_period_start)
    else:
        when, tax_date = sub.current_period_end, utc_date(sub.current_period_end)
    lines = [(sub.flat_amount_minor, sub.package_id, SkuKind.RECURRING_FLAT)]
    billed_seats = max(0, sub.seats - sub.included_seats)
    if billed_seats:
        lines.append((billed_seats * sub.seat_amount_minor, sub.package_id, SkuKind.RECURRING_PER_SEAT))
    lines += [
        (addon.flat_amount_minor * addon.quantity, addon.package_id, SkuKind.RECURRING_FLAT)
        for addon in sub.live_addons
    ]
    setup = 0 if sub.ever_invoiced else sub.price.setup_amount_minor
    if setup:
        lines.append((setup, sub.package_id, SkuKind.ONE_TIME))
    return when, tax_date, lines, setup


def _estimate_facts(sub: Subscription) -> tuple:
    # What else decides this subscription's estimate besides its lines: the estimate is cached per version.
    return (sub.pk, sub.version, sub.status, sub.price_id, sub.currency)


def trial_days_left(subscription: Subscription, now: datetime) -> int | None:
    if subscription.status != SubscriptionStatus.TRIALING or not subscription.trial_end:
        return None
    return max(0, (subscription.trial_end - now).days + (1 if (subscription.trial_end - now).seconds else 0))


def trial_days_change_at(subscription: Subscription, now: datetime) -> datetime | None:
    """The instant after which the trial's days left (`trial_days_left`, as at `now`) are one fewer by the clock
    alone — they turn over at the time of day the trial ends — or None when they no longer change (no trial, or
    0 days left: what happens at the trial's end is a write, which moves the customer's data version)."""
    days = trial_days_left(subscription, now)
    if not days:
        return None
    return subscription.trial_end - timedelta(days=days - 1, seconds=1)


def dashboard_valid_until(context: dict) -> datetime | None:
    """Until when a dashboard worked out at `context["computed_at"]` holds by the clock alone (portal/page_cache.py):
    the first trial's days-left turnover; the rest changes only with the data or the date (both in the key)."""
    turnovers = [
        at
        for card in context["cards"]
        if (at := trial_days_change_at(card["subscription"], context["computed_at"])) is not None
    ]
    return min(turnovers, default=None)


@prebuilt
def _dashboard_subscriptions(nudges: bool, estimate: bool, today: date | None):
    """The dashboard's live-subscription query for one role's variant (nudges, estimate) on `today`, built once per
    process (portal/prebuilt.py); the caller narrows it to the customer and adds what depends on the user."""
    live_addons = Prefetch(
        "addons",
        queryset=SubscriptionAddon.objects.filter(ended_at__isnull=True).select_related("package"),
        to_attr="live_addons",
    )
    regular_invoices = Invoice.objects.filter(subscription_id=OuterRef("pk"), kind=InvoiceKind.REGULAR)
    pending = (
        PendingInvoiceItem.objects.filter(
            subscription_id=OuterRef("pk"), invoice__isnull=True, currency=OuterRef("currency")
        )
        .values("subscription_id")
        .annotate(total=Sum("amount_minor"))
        .values("total")
    )
    members_total = (
        Membership.objects.filter(customer_id=OuterRef("customer_id"))
        .values("customer_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    seats_assigned = (
        SeatAssignment.objects.filter(subscription_id=OuterRef("pk"))
        .order_by()
        .values("subscription_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    nudge_annotations = billing_nudge_annotations(customer_ref="customer_id", today=today) if nudges else {}
    # The next-invoice estimate (billing roles) is cached; its key needs the customer's exemption stamp.
    estimate_annotations = exemption_stamp_annotations(customer_ref="customer_id") if estimate else {}
    return (
        Subscription.objects.filter(status__in=LIVE_STATUSES)
        .select_related("package", "price", "customer__billing_profile")
        .prefetch_related(live_addons)
        .annotate(
            # A correlated count, not Count("seat_assignments"): no GROUP BY over every selected column of the five
            # joined tables (compiling that was a large part of the page's CPU).
            assigned=Coalesce(Subquery(seats_assigned), 0),
            members_total=Subquery(members_total),
            # Voided drafts do not count, as in the billing run: the first real invoice still carries the set-up fee.
            ever_invoiced=Exists(regular_invoices.exclude(status=InvoiceStatus.VOID, issued_at__isnull=True)),
            current_period_invoiced=Exists(regular_invoices.filter(period_start=OuterRef("current_period_start"))),
            pending_minor=Coalesce(Subquery(pending), 0),
            **has_discount_annotation(),
            **nudge_annotations,
            **estimate_annotations,
        )
        .order_by("created_at")
    )


def dashboard_context(*, customer, user, can) -> dict:
    """Everything the dashboard shows, in a constant number of queries: 1 for the live subscriptions (seat counts,
    member count, next-invoice facts and — for billing roles — the oldest overdue invoice, as annotations), 1 for
    their add-ons, the owners' recent activity (1), enablement (2), and — for billing roles — the tax determination
    of the next-invoice estimate (2); a subscription with a discount adds the queries of its next invoice's
    discount lines (`next_invoice_preview`), one without costs none (annotated). Without a live subscription: the
    member count (1) and the overdue invoice (1)
    instead of the subscription, add-on and tax queries."""
    now = timezone.now()
    today = clock.today()
    # Billing roles are told about an unpaid invoice past its due date (members are not: it is not theirs to pay, and
    # their service is not affected unless the subscription itself is past due — that banner they do see), and
    # nudged about one coming due; tax roles about a certificate about to expire. One set of annotations on the same
    # query carries all of it.
    nudges = bool(can.invoices or can.tax)
    subscriptions = list(
        _dashboard_subscriptions(nudges, bool(can.invoices), today if nudges else None)
        .filter(customer=customer)
        .annotate(holds_seat=Exists(SeatAssignment.objects.filter(subscription=OuterRef("pk"), user=user)))
    )
    cards = []
    coming: dict[int, tuple] = {}
    for sub in subscriptions:
        when, tax_date, lines, setup = next_invoice_lines(sub, now)
        discount = None
        if can.invoices and getattr(sub, HAS_DISCOUNT, False):
            # Only a subscription with a discount pays for working out its next invoice line by line.
            upcoming = next_invoice_preview(subscription=sub)
            if upcoming.discount_lines:
                discount = upcoming
                lines = lines + [(d.amount_minor, None, d.tax_category) for d in upcoming.discount_lines]
        coming[sub.pk] = (_estimate_facts(sub), sub.currency, tax_date, lines)
        cards.append(
            {
                "subscription": sub,
                "addons": sub.live_addons,
                "assigned": sub.assigned,
                "unassigned": max(0, sub.seats - sub.assigned),
                "trial_days_left": trial_days_left(sub, now),
                "holds_seat": sub.holds_seat,
                "next_invoice_at": when,
                "setup_minor": setup,
                "pending_minor": sub.pending_minor,
                "discount": discount,
            }
        )
    if can.invoices and subscriptions:
        try:
            profile = subscriptions[0].customer.billing_profile
        except ObjectDoesNotExist:
            profile = None
        first = subscriptions[0]
        estimates = next_invoice_estimates(
            customer_id=customer.pk,
            profile=profile,
            exemption_stamp=(str(first.exemption_changed_at or ""), first.exemption_count or 0),
            items=coming,
        )
        for card in cards:
            card["estimate"] = estimates[card["subscription"].pk]
    if subscriptions:
        members = {"total": subscriptions[0].members_total}
    else:
        members = Membership.objects.filter(customer=customer).aggregate(total=Count("id"))
    activity = []
    if can.activity:
        activity = list(
            AuditEvent.objects.filter(customer=customer).select_related("actor").order_by("-occurred_at", "-id")[:5]
        )
    # The customer's own row of facts for the overdue banner and the nudges: the first subscription carries them as
    # annotations; without one, a single Customer query does.
    facts = subscriptions[0] if subscriptions else None
    if facts is None and nudges:
        facts = billing_nudges_for_customer(customer_id=customer.pk, today=today)
    overdue = overdue_from_nudges(facts, today=today) if can.invoices and facts is not None else None
    hints = []
    seats_url = reverse("portal:seats", args=[customer.pk])
    for card in cards:
        if can.seats and card["unassigned"]:
            n = card["unassigned"]
            hints.append(
                {
                    "text": f"{n} seat{'s' if n != 1 else ''} on {card['subscription'].package.name} unassigned",
                    "url": seats_url,
                    "link": "assign seats",
                    "kind": "unassigned-seats",
                }
            )
    if can.seats and members["total"] == 1:
        hints.append(
            {
                "text": "You are the only person here yet: invite your team",
                "url": seats_url,
                "link": "manage seats",
                "kind": "invite",
            }
        )
    if can.invoices and overdue is None and facts is not None:
        # An overdue invoice has its banner above; this is the one coming due.
        unpaid = unpaid_invoice_from(facts, today=today)
        if unpaid is not None:
            hints.append(
                {
                    "text": f"Invoice {unpaid.number} is unpaid; it is due on "
                    + format_date(unpaid.due_on, customer.country),
                    "url": reverse("portal:invoice_detail", args=[customer.pk, unpaid.invoice_id]),
                    "link": f"view invoice {unpaid.number}",
                    "kind": "unpaid-invoice",
                    "invoice": unpaid,
                }
            )
    if can.tax and facts is not None:
        expires_on = exemption_expiring_from(facts)
        if expires_on is not None:
            days = (expires_on - today).days
            when = "today" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"
            hints.append(
                {
                    "text": (
                        f"Your tax-exemption certificate expires {when} ({format_date(expires_on, customer.country)}): "
                        "upload its renewal"
                    ),
                    "url": reverse("portal:tax", args=[customer.pk]),
                    "link": "upload a certificate",
                    "kind": "exemption-expiring",
                }
            )
    enablement = enablement_for(customer=customer)
    return {
        "computed_at": now,
        "overdue": overdue,
        "overdue_pay_online": overdue is not None and payment_backend() == BACKEND_STRIPE,
        "cards": cards,
        "members": members,
        "activity": activity,
        "hints": hints,
        "enablement": enablement,
        "past_due": any(c["subscription"].status == SubscriptionStatus.PAST_DUE for c in cards),
    }
