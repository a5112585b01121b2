"""The simulation's clock and events.

A pinned clock (time-machine, not ticking) is moved from event to event. The scheduler's work runs at its scheduled
times through the real task functions: the billing run and the enablement drift check every hour at :10, the tax
exemption expiry daily at 02:00, dunning daily at 03:00. Customers act at random times through the services the portal
and the API call (sign-up, billed changes previewed then applied, exemption certificates, billing profile moves, PO
numbers); a billing clerk reviews held invoices every working day at 10:00 and 15:00 by the documented rules
(docs/simulation.md); payments arrive as bank transfers recorded by staff, on time or late.

Every random choice comes from one `random.Random(seed)`, so a run is reproducible. Refusals a customer would see
(e.g. fewer seats than people holding one) are counted, not failures; any other exception stops the run.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import time_machine
from django.core import mail
from django.core.files.base import ContentFile
from django.test import override_settings

from billing.exceptions import BillingError
from billing.models import ExemptionStatus, Invoice, InvoiceStatus, InvoiceStatusChange, TaxExemption
from billing.services.changes import change_apply, change_preview
from billing.services.credit_notes import credit_note_create
from billing.services.documents import html_to_pdf
from billing.services.exemptions import tax_exemption_approve, tax_exemption_reject, tax_exemption_submit
from billing.services.invoices import (
    invoice_apply_payment,
    invoice_approve_and_issue,
    invoice_set_po_number,
    invoices_recheck_for_customer,
)
from billing.services.profiles import billing_profile_update
from billing.tasks import billing_run_task, dunning_run_task, tax_exemptions_daily_task
from portal.services.signup import ExemptionDeclaration, signup_create
from portal.simulation.clerk import ClerkRebills
from portal.simulation.world import CITIES, TAXED_STATES, UNTAXED_STATES, SimCustomer, german_vat_id
from subscriptions.dispatch import send_now
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import LIVE_STATUSES, Package, Subscription, SubscriptionStatus, User
from subscriptions.periods import add_months
from subscriptions.tasks import entitlements_drift_check_task

PASSWORD = "sim-password-1234"
# Chance per customer per day of each thing a customer does (a year of these gives each customer a handful).
DAILY_RATES = {
    "seats_up": 0.012,
    "seats_down": 0.006,
    "package": 0.002,
    "addon_add": 0.002,
    "addon_remove": 0.001,
    "cancel": 0.0012,
    "profile_move": 0.0006,
    "exemption": 0.0008,
    "vat_id": 0.002,
}
CUSTOMER_REPORTED_ERROR_RATE = 0.004  # of issued invoices: a credit note whose root cause is outside Continuum
LATE_PAYER_RATE = 0.12
EXTERNAL_ROOT_CAUSES = ("goodwill", "service_issue", "tax_exemption_missed")


def _stub_pdf():
    """One real one-page PDF per variant, rendered once and returned for every document (e-invoices embed their XML
    into it as usual)."""

    rendered: dict[str | None, bytes] = {}

    def render(html: str, *, pdf_variant: str | None = None) -> bytes:
        if pdf_variant not in rendered:
            rendered[pdf_variant] = html_to_pdf("<p>Simulated document</p>", pdf_variant=pdf_variant)
        return rendered[pdf_variant]

    return render


def _certificate_pdf() -> bytes:

    return html_to_pdf("<h1>Resale certificate</h1><p>Simulated purchaser</p>")


@dataclass
class Stats:
    events: Counter = field(default_factory=Counter)
    refused: Counter = field(default_factory=Counter)
    reviews: Counter = field(default_factory=Counter)
    corrections: Counter = field(default_factory=Counter)
    runs: int = 0
    hours: int = 0
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0


class Simulation:
    def __init__(
        self,
        *,
        customers: list[SimCustomer],
        start: datetime,
        end: datetime,
        seed: int,
        clerk: User,
        render_pdfs: bool = False,
        extensions: tuple = (),
    ):
        self.render_pdfs = render_pdfs
        self.extensions = list(extensions)  # later issues' events and checks (portal/simulation/extensions.py)
        self._dirty = True  # something happened that the next billing run may have to bill
        self.customers = customers
        self.start, self.end = start, end
        self.rng = random.Random(seed)
        self.clerk = clerk
        self.stats = Stats()
        self._queue: list = []
        self._seq = itertools.count()
        self._paid_scheduled: set[int] = set()
        self._po_arrivals: dict[int, datetime] = {}  # invoice id -> when the customer's PO number arrives
        self._address_fixes: dict[int, datetime] = {}  # customer id -> when the customer completes the address
        self._certificate = None
        self.issued_snapshots: dict[int, tuple] = {}  # invoice id -> what it said when first seen issued
        self._status_change_seen = 0  # InvoiceStatusChange id up to which issued invoices were looked at
        self.rebills = ClerkRebills(self)  # customer-reported wrong details: void and re-bill (clerk.py)
        self.cards = None  # CardDesk (cards.py) when the run has card customers on localstripe
        self.progress: Callable[[str], None] | None = None  # told each simulated month's start (the command: stderr)

    # -- scheduling ------------------------------------------------------------------------------------------------
    def hook(self, name: str, *args) -> list:
        """Call `name` on every extension that has it; their answers, in order."""
        return [getattr(ext, name)(self, *args) for ext in self.extensions if hasattr(ext, name)]

    def hook_wrap(self, name: str, *args):
        """`args[-1]` (a service function) wrapped by every extension that has `name` (e.g. adds a promotion code)."""
        function = args[-1]
        for ext in self.extensions:
            if hasattr(ext, name):
                function = getattr(ext, name)(self, *args[:-1], function)
        return function

    def at(self, when: datetime, action: Callable, *args) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), action, args))

    def _every(self, first: datetime, step: timedelta, action: Callable) -> None:
        def again():
            action()
            if self.now + step < self.end:
                self.at(self.now + step, again)

        self.at(first, again)

    def run(self) -> Stats:
        day0 = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        self._every(day0 + timedelta(minutes=10), timedelta(hours=1), self.hourly)
        self._every(day0 + timedelta(hours=5, minutes=20), timedelta(hours=6), self.drift_check)
        self._every(day0 + timedelta(hours=2), timedelta(days=1), self.daily_exemptions)
        self._every(day0 + timedelta(hours=3), timedelta(days=1), self.daily_dunning)
        self._every(day0 + timedelta(hours=4), timedelta(days=1), self.customers_act)
        for hour in (10, 15):
            self._every(day0 + timedelta(hours=hour), timedelta(days=1), self.clerk_review)
        for customer in self.customers:
            minute = self.rng.randrange(24 * 60)
            self.at(day0 + timedelta(days=customer.signup_day, minutes=minute), self.signup, customer)
        self.hook("schedule", day0)
        # Hashing 1,000 passwords with PBKDF2 would be most of the run; nothing here is about passwords.
        # E-mails (invoices with their PDF, reminders) go to an in-memory outbox, emptied every simulated day.
        with (
            override_settings(
                PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
                EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            ),
            contextlib.ExitStack() as stack,
        ):
            if not self.render_pdfs:
                # WeasyPrint would be most of a year's run time; documents are not what the invariants check. `new`,
                # not a Mock: a Mock would keep every document's HTML in its call list for the whole year.
                stack.enter_context(mock.patch("billing.services.documents.html_to_pdf", new=_stub_pdf()))
            # A task queued after commit with a countdown runs at that time on the simulated clock, as a worker would
            # run it (eager mode would run it at once and defeat its debounce, e.g. the health recompute's minute).
            stack.enter_context(mock.patch("subscriptions.dispatch.send_now", new=self._send_at_countdown(send_now)))
            self.hook("enter", stack)
            with time_machine.travel(self.start, tick=False) as traveller:
                month = (self.start.year, self.start.month)
                while self._queue:
                    when, _, action, args = heapq.heappop(self._queue)
                    if when >= self.end:
                        break
                    if self.progress is not None and (when.year, when.month) != month:
                        month = (when.year, when.month)
                        self.progress(
                            f"simulated {when:%Y-%m-%d}: {time.monotonic() - self.stats.started:.0f} s, "
                            f"{self.stats.runs} billing runs, {sum(self.stats.events.values())} events"
                        )
                    traveller.move_to(when)
                    self.now = when
                    action(*args)
                traveller.move_to(self.end)
                self.now = self.end
                self._dirty = True
                self.hourly()  # the last run: everything due by the end is billed and enabled
                self.drift_check()
                self.hook("finish", traveller)
        self.stats.seconds = time.monotonic() - self.stats.started
        return self.stats

    def _send_at_countdown(self, send: Callable) -> Callable:
        def send_at(task_name: str, /, *, options: dict | None = None, **kwargs) -> bool:
            options = dict(options or {})
            countdown = options.pop("countdown", None)
            if not countdown:
                return send(task_name, options=options, **kwargs)
            self.at(self.now + timedelta(seconds=countdown), lambda: send(task_name, options=options, **kwargs))
            return True

        return send_at

    # -- the scheduler's work --------------------------------------------------------------------------------------
    def hourly(self) -> None:
        """The billing run, as beat runs it every hour; skipped (as a no-op would be) when nothing happened since
        the last run and no period has ended, to keep a year's run short."""
        self.stats.hours += 1
        if self.cards:
            self.cards.deliver()  # Stripe's webhooks of the last hour, twice and out of order
        period_ended = Subscription.objects.filter(status__in=LIVE_STATUSES, current_period_end__lte=self.now).exists()
        if not (self._dirty or period_ended):
            return
        billing_run_task()
        self._dirty = False
        self.stats.runs += 1
        self._after_issue_scan()

    def drift_check(self) -> None:
        entitlements_drift_check_task()

    def daily_exemptions(self) -> None:
        self._dirty = True
        tax_exemptions_daily_task()
        mail.outbox = []

    def daily_dunning(self) -> None:
        dunning_run_task()
        if self.cards:
            self.cards.scan()

    # -- customers -------------------------------------------------------------------------------------------------
    def signup(self, c: SimCustomer) -> None:
        self._dirty = True
        city, postal = CITIES[c.region or c.country]
        billing = {"legal_name": f"{c.name} Ltd", "address_line1": f"{c.index} Main Street", "city": city}
        if c.kind != "us_incomplete":
            billing["postal_code"] = postal
        if c.tax_id:
            billing["tax_id"] = c.tax_id
        exemption = None
        if c.exemption_at_signup:
            exemption = ExemptionDeclaration(
                jurisdictions=f"US-{c.region}",
                exemption_type="resale",
                certificate_number=f"RS-{c.index:05d}",
                expires_on=(self.now + timedelta(days=self.rng.randint(120, 500))).date(),
                certificate=self._certificate_file(),
                reason="We resell the seats.",
            )
        result = self.hook_wrap("signup_create", c, signup_create)(
            package_slug=c.package,
            interval=c.interval,
            seats=c.seats,
            trial=c.trial,
            company_name=c.name,
            country=c.country,
            region=c.region,
            currency=c.currency,
            name=f"Owner {c.index}",
            email=c.email,
            password=PASSWORD,
            billing=billing,
            exemption=exemption,
        )
        c.customer_id, c.owner_id, c.subscription_id = result.customer.pk, result.user.pk, result.subscription.pk
        self.hook("after_signup", c, result)
        if c.requires_po:  # agreed with billing staff at sign-up
            billing_profile_update(
                customer=result.customer, actor=self.clerk, requires_po=True, standing_po_number=c.standing_po
            )
        if self.cards:
            self.cards.after_signup(c)  # a card customer saves their card on the payment-methods page
        if c.kind == "us_incomplete":
            self._address_fixes[c.customer_id] = self.now + timedelta(days=self.rng.randint(1, 4))
        self.stats.events["signup"] += 1
        if c.trial and self.rng.random() < 0.3:  # lapses: cancels before the trial ends
            self.at(self.now + timedelta(days=self.rng.randint(2, 12)), self.change, c, "cancel")

    def _certificate_file(self) -> ContentFile:
        if self._certificate is None:
            self._certificate = _certificate_pdf()
        return ContentFile(self._certificate, name="certificate.pdf")

    def customers_act(self) -> None:
        """Each day, each customer may do something; each action happens at its own random time of the day."""
        for c in self.customers:
            if c.customer_id is None:
                continue
            for kind, rate in DAILY_RATES.items():
                if self.rng.random() < rate:
                    self.at(self.now + timedelta(minutes=self.rng.randrange(20 * 60)), self.change, c, kind)

    def change(self, c: SimCustomer, kind: str) -> None:
        subscription = Subscription.objects.filter(pk=c.subscription_id).select_related("package").first()
        if subscription is None or subscription.status not in LIVE_STATUSES:
            return
        handler = getattr(self, f"_do_{kind}")
        self._dirty = True
        try:
            handler(c, subscription)
            self.stats.events[kind] += 1
        except (SubscriptionError, BillingError) as refusal:
            self.stats.refused[f"{kind}: {type(refusal).__name__}"] += 1

    def _billed(self, c: SimCustomer, subscription: Subscription, kind: str, **params) -> None:
        preview = change_preview(subscription_id=subscription.pk, kind=kind, **params)
        change_apply(
            subscription_id=subscription.pk,
            kind=kind,
            expected_version=preview.version,
            expected_amount_due_minor=preview.preview.amount_due_now_minor,
            actor=User.objects.get(pk=c.owner_id),
            idempotency_key=f"sim-{c.index}-{kind}-{self.now.timestamp()}",
            **params,
        )

    def _do_seats_up(self, c, subscription) -> None:
        self._billed(c, subscription, "seats", seats=subscription.seats + self.rng.randint(1, 3))

    def _do_seats_down(self, c, subscription) -> None:
        self._billed(c, subscription, "seats", seats=max(1, subscription.seats - self.rng.randint(1, 2)))

    def _do_package(self, c, subscription) -> None:
        targets = list(subscription.package.change_targets.filter(is_active=True))
        if not targets:
            return
        target = self.rng.choice(targets)
        seats = min(max(subscription.seats, target.min_seats), target.max_seats or subscription.seats)
        self._billed(c, subscription, "package", package_slug=target.slug, interval=subscription.interval, seats=seats)

    def _do_addon_add(self, c, subscription) -> None:
        active = set(subscription.addons.filter(ended_at__isnull=True).values_list("package__slug", flat=True))
        options = [p.slug for p in Package.objects.filter(is_addon=True, is_active=True) if p.slug not in active]
        if options:
            self._billed(c, subscription, "addon_add", addon_slug=self.rng.choice(options))

    def _do_addon_remove(self, c, subscription) -> None:
        active = list(subscription.addons.filter(ended_at__isnull=True).values_list("package__slug", flat=True))
        if active:
            self._billed(c, subscription, "addon_remove", addon_slug=self.rng.choice(active))

    def _do_cancel(self, c, subscription) -> None:
        if subscription.cancel_at_period_end:
            return
        self._billed(c, subscription, "cancel", reason="Simulated churn")
        if self.rng.random() < 0.35:  # changes their mind before the period ends
            self.at(self.now + timedelta(days=self.rng.randint(1, 6)), self.change, c, "reactivate")

    def _do_reactivate(self, c, subscription) -> None:
        if subscription.cancel_at_period_end and subscription.status != SubscriptionStatus.TRIALING:
            self._billed(c, subscription, "reactivate")

    def _do_profile_move(self, c, subscription) -> None:
        if c.country != "US":
            return
        region = self.rng.choice([s for s in TAXED_STATES + UNTAXED_STATES if s != c.region])
        city, postal = CITIES[region]
        customer = subscription.customer
        billing_profile_update(
            customer=customer,
            actor=User.objects.get(pk=c.owner_id),
            address_line1=f"{c.index} New Street",
            city=city,
            region=region,
            postal_code=postal,
        )
        c.region = region

    def _do_exemption(self, c, subscription) -> None:
        if c.country != "US" or c.region not in TAXED_STATES:
            return
        if TaxExemption.objects.filter(customer_id=c.customer_id, status=ExemptionStatus.SUBMITTED).exists():
            return
        tax_exemption_submit(
            customer=subscription.customer,
            jurisdictions=[f"US-{c.region}"],
            exemption_type="resale",
            certificate_number=f"RS-{c.index:05d}-{self.now:%m%d}",
            expires_on=(self.now + timedelta(days=self.rng.randint(60, 420))).date(),
            certificate=self._certificate_file(),
            reason="We resell the seats.",
            actor=User.objects.get(pk=c.owner_id),
        )

    def _do_vat_id(self, c, subscription) -> None:
        if c.kind != "eu_no_vat" or c.country != "DE" or c.tax_id:
            return
        c.tax_id = german_vat_id(self.rng)
        billing_profile_update(customer=subscription.customer, actor=User.objects.get(pk=c.owner_id), tax_id=c.tax_id)

    # -- the billing clerk -----------------------------------------------------------------------------------------
    def clerk_review(self) -> None:
        """The documented review (docs/simulation.md): decide pending exemptions, chase what the checks ask for,
        approve what only needs a look; never override a blocking check."""
        if self.now.weekday() >= 5:
            return
        self._dirty = True
        for exemption in TaxExemption.objects.filter(
            status=ExemptionStatus.SUBMITTED, submitted_at__lte=self.now - timedelta(days=1)
        ):
            if self.rng.random() < 0.85:
                tax_exemption_approve(exemption_id=exemption.pk, reviewer=self.clerk, note="Certificate checked")
                self.stats.reviews["exemption approved"] += 1
            else:
                tax_exemption_reject(exemption_id=exemption.pk, reviewer=self.clerk, reason="Certificate unreadable")
                self.stats.reviews["exemption rejected"] += 1
        for customer_id, when in list(self._address_fixes.items()):
            if when <= self.now:
                c = next(c for c in self.customers if c.customer_id == customer_id)
                owner = User.objects.get(pk=c.owner_id)
                billing_profile_update(customer=owner.memberships.get().customer, actor=owner, postal_code="99999")
                del self._address_fixes[customer_id]
                invoices_recheck_for_customer(customer_id=customer_id, actor=self.clerk)
                self.stats.reviews["address completed"] += 1
        for invoice_id in Invoice.objects.filter(status=InvoiceStatus.HELD).order_by("id").values_list("id", flat=True):
            invoice = Invoice.objects.get(pk=invoice_id)
            if invoice.status != InvoiceStatus.HELD:
                continue  # released meanwhile (a recheck of the customer's invoices issued it)
            codes = {reason["code"] for reason in invoice.hold_reasons}
            if "po_missing" in codes:
                arrival = self._po_arrivals.setdefault(invoice.pk, self.now + timedelta(days=self.rng.randint(1, 5)))
                if arrival > self.now:
                    continue  # asked the customer; the PO number has not arrived yet
                invoice_set_po_number(invoice_id=invoice.pk, po_number=f"PO-LATE-{invoice.pk}", actor=self.clerk)
                self.stats.reviews["late PO entered"] += 1
                invoice.refresh_from_db()
                if invoice.status != InvoiceStatus.HELD:
                    continue  # the PO was all it needed: entering it re-ran the checks and issued it
                codes = {reason["code"] for reason in invoice.hold_reasons}
            if codes & {"exemption_pending", "tax_location_missing", "negative_total", "currency_mismatch"}:
                continue  # blocking: the cause is fixed first (exemption decided, address completed)
            if codes == set() and invoice.status == InvoiceStatus.HELD:
                invoices_recheck_for_customer(customer_id=invoice.customer_id, actor=self.clerk)
                continue
            invoice_approve_and_issue(invoice_id=invoice.pk, actor=self.clerk, note="Simulated review")
            for code in codes:
                self.stats.reviews[f"approved after hold: {code}"] += 1
        self.rebills.review()
        self._after_issue_scan()

    # -- payments and corrections ----------------------------------------------------------------------------------
    def _after_issue_scan(self) -> None:
        """Newly issued invoices: remember what they said, and schedule the customer's bank transfer."""
        # Only invoices that entered open or paid since the last look (every status change writes its row): a
        # year's scans no longer send every issued invoice's id with each query (which grew with the base).
        entered = list(
            InvoiceStatusChange.objects.filter(
                pk__gt=self._status_change_seen, to_status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID)
            ).values_list("pk", "invoice_id")
        )
        if entered:
            self._status_change_seen = max(pk for pk, _ in entered)
        unseen = {invoice_id for _, invoice_id in entered} - self.issued_snapshots.keys()
        fresh = (
            Invoice.objects.filter(pk__in=unseen, status__in=(InvoiceStatus.OPEN, InvoiceStatus.PAID)).prefetch_related(
                "lines"
            )
            if unseen
            else ()
        )
        for invoice in fresh:
            self.issued_snapshots[invoice.pk] = invoice_snapshot(invoice)
            by_card = self.cards is not None and self.cards.after_issue(invoice)
            if invoice.status == InvoiceStatus.OPEN and invoice.amount_due_minor > 0 and not by_card:
                due = datetime.combine(invoice.due_on, datetime.min.time(), tzinfo=UTC)
                if self.rng.random() < LATE_PAYER_RATE:
                    when = due + timedelta(days=self.rng.randint(1, 40), hours=self.rng.randint(9, 17))
                else:
                    when = invoice.issued_at + timedelta(
                        days=self.rng.randint(0, max(0, (due - invoice.issued_at).days)), hours=self.rng.randint(1, 8)
                    )
                self.at(max(when, self.now + timedelta(minutes=1)), self.pay, invoice.pk)
            self.rebills.after_issue(invoice)
            if self.rng.random() < CUSTOMER_REPORTED_ERROR_RATE and invoice.total_minor > 0:
                self.at(self.now + timedelta(days=self.rng.randint(2, 20)), self.customer_reports_error, invoice.pk)
        if self.cards:
            self.cards.scan()

    def pay(self, invoice_id: int) -> None:
        invoice = Invoice.objects.get(pk=invoice_id)
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) or invoice.amount_due_minor <= 0:
            return
        invoice_apply_payment(
            invoice_id=invoice.pk,
            amount_minor=invoice.amount_due_minor,
            currency=invoice.currency,
            paid_at=self.now,
            actor=self.clerk,
            reference=f"Bank transfer {invoice.number}",
        )
        self.stats.events["payment"] += 1

    def customer_reports_error(self, invoice_id: int) -> None:
        """A customer-reported problem outside Continuum (an outage, a goodwill gesture): a partial credit note."""
        invoice = Invoice.objects.prefetch_related("lines").get(pk=invoice_id)
        line = next((line for line in invoice.lines.all() if line.amount_minor > 0), None)
        if line is None or invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID):
            return
        reason = self.rng.choice(["goodwill", "service_issue"])
        credit_note_create(
            invoice_id=invoice.pk,
            reason_code=reason,
            reason_text="Simulated: customer-reported",
            lines=[{"invoice_line_id": line.pk, "amount_minor": max(1, line.amount_minor // 10)}],
            actor=self.clerk,
        )
        self.stats.corrections[reason] += 1


def invoice_snapshot(invoice: Invoice) -> tuple:
    """What an issued invoice says; the invariants check nothing of it changes afterwards."""
    lines = tuple(
        (line.description, line.quantity, line.unit_amount_minor, line.amount_minor, str(line.tax_rate))
        for line in sorted(invoice.lines.all(), key=lambda line: line.pk)
    )
    return (invoice.number, invoice.currency, invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor, lines)


def sim_dates(start: date, months: int) -> tuple[datetime, datetime]:

    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    return begin, add_months(begin, months)
