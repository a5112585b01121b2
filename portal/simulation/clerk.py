"""The billing clerk's void and re-bill, and its invariants.

A small share of customers tell billing, a few days after an invoice is issued and before they pay it, that the
legal name on it is wrong (a customer-reported error: their entity was renamed). On the next working-day review the
clerk corrects the billing profile, then voids the invoice with the root-cause code `wrong_billing_details` and
re-bills it through `billing.services.invoices.invoice_void_and_rebill` — the documented correction for an unpaid
invoice whose details were wrong. A paid invoice is not re-billed (the clerk would credit it); the request is
counted as too late.

Invariants (read from the database, not from the service): a voided invoice has nothing paid, credited or due and
still says what it said at issue (year.invoice_snapshot, checked in invariants.check_all); every re-billed invoice
has exactly one live invoice for the same subscription, kind and period with the same net amount; and no mid-period
item stays collected by a re-billed (void) invoice: it moves to the new one.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from billing.models import Invoice, InvoiceKind, InvoiceStatus, PendingInvoiceItem
from billing.services.invoices import invoice_void_and_rebill
from billing.services.profiles import billing_profile_update
from subscriptions.models import AuditEvent

WRONG_DETAILS_RATE = 0.002  # of issued, unpaid invoices: the customer reports a wrong legal name before paying
REBILL_ROOT_CAUSE = "wrong_billing_details"
# How the clerk's void reason starts when the customer's own details were wrong: a root cause outside Continuum, so
# the report's "inside Continuum" rate leaves it out (as it leaves out goodwill and service-issue credit notes).
CUSTOMER_REPORTED = "Customer-reported:"


class ClerkRebills:
    """The re-bill requests the clerk has received, and what became of them."""

    def __init__(self, simulation, rate: float = WRONG_DETAILS_RATE):
        self.sim = simulation
        self.rate = rate
        self.requests: dict[int, datetime] = {}  # invoice id -> when the customer's report arrived

    def after_issue(self, invoice: Invoice) -> None:
        """Called for every newly issued invoice: maybe the customer will report its legal name as wrong."""
        if invoice.status != InvoiceStatus.OPEN or invoice.amount_due_minor <= 0:
            return
        if self.sim.rng.random() < self.rate:
            self.requests[invoice.pk] = self.sim.now + timedelta(days=self.sim.rng.randint(1, 5))

    def review(self) -> None:
        """The working-day review: correct the profile, then void and re-bill every reported invoice still unpaid."""
        for invoice_id, arrives in sorted(self.requests.items()):
            if arrives > self.sim.now:
                continue
            del self.requests[invoice_id]
            invoice = Invoice.objects.select_related("customer").get(pk=invoice_id)
            if invoice.status != InvoiceStatus.OPEN or invoice.amount_paid_minor or invoice.amount_credited_minor:
                self.sim.stats.reviews["re-bill request too late (paid or credited)"] += 1
                continue
            legal_name = f"{invoice.customer.name} Group Ltd (renamed {self.sim.now:%Y-%m-%d})"
            billing_profile_update(customer=invoice.customer, actor=self.sim.clerk, legal_name=legal_name)
            new = invoice_void_and_rebill(
                invoice_id=invoice.pk,
                reason_code=REBILL_ROOT_CAUSE,
                reason=f"{CUSTOMER_REPORTED} the legal name on the invoice is wrong",
                actor=self.sim.clerk,
            )
            self.sim.stats.reviews["voided and re-billed"] += 1
            self.sim.stats.corrections[f"void: {REBILL_ROOT_CAUSE}"] += 1
            self.sim._dirty = True
            if new.status == InvoiceStatus.HELD:
                self.sim.stats.reviews["re-bill held by the checks"] += 1


def rebill_violations(violation) -> list:
    """The void-and-re-bill invariants (see the module docstring). `violation(invariant, subject, facts)` builds one."""
    found = []
    voided = list(Invoice.objects.filter(status=InvoiceStatus.VOID))
    for invoice in voided:
        subject = f"void invoice {invoice.number or f'#{invoice.pk}'}"
        if invoice.amount_paid_minor or invoice.amount_credited_minor or invoice.amount_due_minor:
            found.append(
                violation(
                    "money",
                    subject,
                    f"paid {invoice.amount_paid_minor}, credited {invoice.amount_credited_minor}, "
                    f"due {invoice.amount_due_minor} (a void invoice holds no money)",
                )
            )
        if not invoice.void_reason_code:
            found.append(violation("numbering", subject, "voided without a root-cause code"))
    rebilled = {
        int(event.before["invoice_id"]): int(event.after["invoice_id"])
        for event in AuditEvent.objects.filter(action="invoice.rebilled")
    }
    for item in PendingInvoiceItem.objects.filter(invoice_id__in=rebilled.keys()):
        found.append(violation("money", f"mid-period item {item.pk}", f"left on re-billed invoice {item.invoice_id}"))
    live = defaultdict(list)
    for invoice in Invoice.objects.exclude(status=InvoiceStatus.VOID).filter(subscription__isnull=False):
        live[(invoice.subscription_id, invoice.kind, invoice.period_start, invoice.period_end)].append(invoice)
    by_id = {invoice.pk: invoice for invoice in voided}
    for old_id, new_id in rebilled.items():
        old = by_id.get(old_id)
        subject = f"re-billed invoice {old.number or f'#{old.pk}'}" if old else f"re-billed invoice #{old_id}"
        if old is None:
            found.append(violation("numbering", subject, "re-billed but not void"))
            continue
        if old.subscription_id is None:
            continue
        same = live[(old.subscription_id, old.kind, old.period_start, old.period_end)]
        if old.kind == InvoiceKind.REGULAR and len(same) != 1:
            found.append(violation("periods", subject, f"{len(same)} live invoices for its period (expected 1)"))
        replacement = next((i for i in same if i.pk == new_id), None)
        if replacement is None:
            found.append(violation("periods", subject, f"its re-bill #{new_id} is missing or void"))
        elif replacement.subtotal_minor != old.subtotal_minor:
            found.append(
                violation("money", subject, f"re-billed net {replacement.subtotal_minor} ≠ voided {old.subtotal_minor}")
            )
        elif replacement.billing_legal_name == old.billing_legal_name:
            found.append(violation("holds", subject, "re-billed with the same wrong legal name"))
    return found
