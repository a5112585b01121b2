"""Reads for the back office's customer 360 page: everything about one customer in a fixed number of queries.

Each section is one query (or one query plus one prefetch), capped at a number of rows, so the page's query count
does not grow with the customer's history. The timeline merges the sections' rows in memory.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Prefetch
from django.urls import reverse
from django.utils import timezone

from billing.models import (
    BillingProfile,
    CreditNote,
    ExemptionStatus,
    Invoice,
    InvoiceStatus,
    InvoiceStatusChange,
    Payment,
    StripeCustomer,
    TaxExemption,
)
from subscriptions.clock import utc_date
from subscriptions.models import (
    LIVE_STATUSES,
    AuditEvent,
    Customer,
    Entitlement,
    EntitlementState,
    Invitation,
    Membership,
    ProvisioningRun,
    StaffNote,
    Subscription,
    SubscriptionAddon,
    SubscriptionStatus,
)
from subscriptions.money import format_money_staff as money
from subscriptions.selectors import JourneyStage, customer_journey_stage

SECTION_LIMIT = 25
TIMELINE_LIMIT = 100


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    who: str
    what: str
    detail: str = ""
    url: str = ""


@dataclass(frozen=True)
class Health:
    level: str  # "ok", "warning", "error"
    message: str


@dataclass
class Customer360:
    customer: Customer
    subscriptions: list[Subscription]
    members: list[Membership]
    pending_invitations: list[Invitation]
    notes: list[StaffNote]
    audit: list[AuditEvent]
    invoices: list[Invoice] = field(default_factory=list)
    invoice_changes: list[InvoiceStatusChange] = field(default_factory=list)
    credit_notes: list[CreditNote] = field(default_factory=list)
    billing_profile: BillingProfile | None = None
    exemptions: list[TaxExemption] = field(default_factory=list)
    entitlements: list[Entitlement] = field(default_factory=list)
    user_seat_entitlements: dict[str, int] = field(default_factory=dict)
    provisioning_runs: list[ProvisioningRun] = field(default_factory=list)
    journey_stage: str = ""
    payments: list[Payment] = field(default_factory=list)
    stripe_customer: StripeCustomer | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    health: list[Health] = field(default_factory=list)

    @property
    def live_subscriptions(self) -> list[Subscription]:
        return [s for s in self.subscriptions if s.status in LIVE_STATUSES]

    @property
    def current_exemption(self) -> TaxExemption | None:
        return self.exemptions[0] if self.exemptions else None

    @property
    def seats_purchased(self) -> int:
        return sum(s.seats for s in self.live_subscriptions)

    @property
    def seats_assigned(self) -> int:
        return sum(s.assigned_seats for s in self.live_subscriptions)


def _who(user) -> str:
    return user.email if user is not None else "system"


def customer_360(*, customer: Customer, now: datetime | None = None) -> Customer360:
    now = now or timezone.now()
    subscriptions = list(
        Subscription.objects.filter(customer=customer)
        .select_related("package")
        .annotate(assigned_seats=Count("seat_assignments", distinct=True))
        .prefetch_related(
            Prefetch(
                "addons",
                queryset=SubscriptionAddon.objects.filter(ended_at__isnull=True).select_related("package"),
                to_attr="live_addons",
            )
        )
        .order_by("-created_at")[:SECTION_LIMIT]
    )
    members = list(
        Membership.objects.filter(customer=customer).select_related("user").order_by("role", "user__email")[:200]
    )
    invitations = list(
        Invitation.objects.filter(
            customer=customer, accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).select_related("invited_by")[:SECTION_LIMIT]
    )
    notes = list(StaffNote.objects.filter(customer=customer).select_related("author")[:SECTION_LIMIT])
    audit = list(AuditEvent.objects.filter(customer=customer).select_related("actor")[:TIMELINE_LIMIT])
    view = Customer360(
        customer=customer,
        subscriptions=subscriptions,
        members=members,
        pending_invitations=invitations,
        notes=notes,
        audit=audit,
        invoices=list(Invoice.objects.filter(customer=customer).order_by("-created_at", "-id")[:SECTION_LIMIT]),
        invoice_changes=list(
            InvoiceStatusChange.objects.filter(invoice__customer=customer)
            .select_related("invoice", "actor")
            .order_by("-created_at", "-id")[:TIMELINE_LIMIT]
        ),
        credit_notes=list(
            CreditNote.objects.filter(customer=customer).select_related("invoice", "created_by")[:SECTION_LIMIT]
        ),
        billing_profile=BillingProfile.objects.filter(customer=customer).first(),
        exemptions=list(
            TaxExemption.objects.filter(customer=customer).select_related("reviewer").order_by("-submitted_at")[:5]
        ),
        # Customer-wide entitlements one by one; per-person seats are counted by state (there may be thousands).
        entitlements=list(
            Entitlement.objects.filter(customer=customer, user__isnull=True)
            .select_related("package")
            .order_by("feature_key")[:100]
        ),
        user_seat_entitlements=dict(
            Entitlement.objects.filter(customer=customer, user__isnull=False)
            .values("state")
            .annotate(count=Count("id"))
            .values_list("state", "count")
        ),
        provisioning_runs=list(ProvisioningRun.objects.filter(customer=customer).order_by("-id")[:SECTION_LIMIT]),
        payments=list(
            Payment.objects.filter(customer=customer)
            .select_related("invoice", "recorded_by", "payment_method")
            .order_by("-created_at", "-id")[:SECTION_LIMIT]
        ),
        stripe_customer=StripeCustomer.objects.filter(customer=customer).first(),
    )
    for invoice in view.invoices:
        invoice.total_display = money(invoice.total_minor, invoice.currency)
        invoice.due_display = money(invoice.amount_due_minor, invoice.currency)
        invoice.paid_display = money(invoice.amount_paid_minor, invoice.currency)
    for note in view.credit_notes:
        note.total_display = money(note.total_minor, note.currency)
    for payment in view.payments:
        payment.amount_display = money(payment.amount_minor, payment.currency)
    view.journey_stage = JourneyStage(customer_journey_stage(customer, as_of=now)).label
    view.timeline = _timeline(view)
    view.health = _health(view, now=now)
    return view


def _timeline(view: Customer360) -> list[TimelineEntry]:
    entries = [
        TimelineEntry(
            at=event.created_at,
            kind="change",
            who=_who(event.actor) if event.actor_id else event.get_actor_kind_display(),
            what=event.summary or event.action,
            detail=event.reason,
            url=reverse("admin:subscriptions_auditevent_change", args=[event.pk]),
        )
        for event in view.audit
    ]
    entries += [
        TimelineEntry(at=note.created_at, kind="note", who=_who(note.author), what="Internal note", detail=note.body)
        for note in view.notes
    ]
    entries += [
        TimelineEntry(
            at=change.created_at,
            kind="invoice",
            who=_who(change.actor),
            what=f"Invoice {change.invoice}: {change.from_status or 'created'} → {change.to_status}",
            detail=change.reason,
            url=reverse("admin:billing_invoice_change", args=[change.invoice_id]),
        )
        for change in view.invoice_changes
    ]
    entries += [
        TimelineEntry(
            at=note.issued_at,
            kind="credit note",
            who=_who(note.created_by),
            what=f"Credit note {note.number} for {note.invoice}",
            detail=f"{note.get_reason_code_display()}: {note.reason_text}",
            url=reverse("admin:billing_creditnote_change", args=[note.pk]),
        )
        for note in view.credit_notes
    ]
    entries += [
        TimelineEntry(
            at=payment.created_at,
            kind="payment",
            who=_who(payment.recorded_by) if payment.recorded_by_id else "Stripe",
            what=(
                f"{payment.get_kind_display()} {payment.amount_display} on {payment.invoice}: "
                f"{payment.get_status_display()}"
            ),
            detail=payment.failure_message or payment.reference,
            url=reverse("admin:billing_payment_change", args=[payment.pk]),
        )
        for payment in view.payments
    ]
    entries += [
        TimelineEntry(
            at=run.finished_at or run.started_at or run.queued_at,
            kind="provisioning",
            who="system",
            what=f"Provisioning {run.get_outcome_display().lower()} ({run.trigger or 'no trigger'})",
            detail=run.error,
            url=reverse("admin:subscriptions_provisioningrun_change", args=[run.pk]),
        )
        for run in view.provisioning_runs
        if run.finished_at or run.started_at or run.queued_at
    ]
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries[:TIMELINE_LIMIT]


def _health(view: Customer360, *, now: datetime) -> list[Health]:
    health: list[Health] = []
    live = view.live_subscriptions
    if not live:
        health.append(Health("warning", "No live subscription."))
    for subscription in live:
        if subscription.status == SubscriptionStatus.PAST_DUE:
            health.append(Health("error", f"{subscription.package.name} is past due."))
        if (
            subscription.status == SubscriptionStatus.TRIALING
            and subscription.trial_end
            and subscription.trial_end - now < timedelta(days=3)
        ):
            health.append(
                Health("warning", f"Trial of {subscription.package.name} ends {subscription.trial_end:%Y-%m-%d}.")
            )
        if subscription.current_period_end <= now:
            health.append(
                Health(
                    "error",
                    f"{subscription.package.name}: ended {subscription.current_period_end:%Y-%m-%d}, not renewed.",
                )
            )
        if subscription.cancel_at_period_end:
            health.append(
                Health("warning", f"{subscription.package.name} cancels on {subscription.current_period_end:%Y-%m-%d}.")
            )
        if subscription.assigned_seats > subscription.seats:
            health.append(
                Health("error", f"{subscription.assigned_seats} seats assigned but only {subscription.seats} bought.")
            )
    failed = [e for e in view.entitlements if e.state == EntitlementState.FAILED]
    failed_seats = view.user_seat_entitlements.get(EntitlementState.FAILED, 0)
    if failed or failed_seats:
        names = ", ".join(e.feature_key for e in failed) or f"{failed_seats} seat(s)"
        health.append(Health("error", f"Provisioning failed: {names}. Retry once the cause is fixed."))
    pending = [e for e in view.entitlements if e.state in (EntitlementState.PENDING, EntitlementState.REVOKING)]
    if pending:
        health.append(Health("warning", f"{len(pending)} entitlement(s) still being switched on or off."))
    held = [invoice for invoice in view.invoices if invoice.status == InvoiceStatus.HELD]
    if held:
        health.append(Health("warning", f"{len(held)} invoice(s) held for review."))
    overdue = [
        invoice
        for invoice in view.invoices
        if invoice.status == InvoiceStatus.OPEN and invoice.due_on and invoice.due_on < utc_date(now)
    ]
    if overdue:
        health.append(Health("error", f"{len(overdue)} invoice(s) overdue."))
    exemption = view.current_exemption
    if exemption is not None and exemption.status == ExemptionStatus.SUBMITTED:
        health.append(Health("warning", "Tax exemption certificate awaiting review."))
    elif (
        exemption is not None
        and exemption.status == ExemptionStatus.APPROVED
        and exemption.expires_on < utc_date(now + timedelta(days=30))
    ):
        health.append(Health("warning", f"Tax exemption expires {exemption.expires_on:%Y-%m-%d}."))
    if view.billing_profile is None:
        health.append(Health("warning", "No billing profile yet."))
    if not health:
        health.append(Health("ok", "Nothing needs attention."))
    return health
