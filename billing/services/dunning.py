"""Dunning: what happens after automatic collection of an open invoice fails.

1. The invoice stays open; the billing contacts get an e-mail with a link to pay it now.
2. Retries (off-session charges of the default card) follow settings.DUNNING_RETRY_DAYS, counted from the first
   failure (default 1, 3, 5 and 7 days). `dunning_run` (Celery beat) performs the ones that are due.
3. Once settings.DUNNING_GRACE_DAYS have passed since the first failure, the invoice's subscription(s) go past_due:
   visible to the customer, entitlements kept.
4. When the final retry fails: settings.DUNNING_FINAL_ACTION — "uncollectible" marks the invoice uncollectible
   (it can still be paid), "cancel" cancels the subscription(s) as well.
5. A payment at any point (card, pay-now, bank transfer) closes the case and restores past_due subscriptions.
Every step is audited on the customer's timeline.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from billing.locks import billing_rows_lock
from billing.models import BillingProfile, DunningCase, DunningStage, Invoice, InvoiceStatus, Payment
from billing.services import invoices as invoice_services
from billing.services.events import invoice_overdue_record
from billing.services.payments import invoice_collect, money
from billing.services.transitions import transition_set
from subscriptions.models import LIVE_STATUSES, ActorKind, Membership, Role, Subscription, SubscriptionStatus
from subscriptions.money import format_date
from subscriptions.services.audit import audit_record
from subscriptions.services.lifecycle import subscription_cancel_now, subscription_mark_past_due, subscription_restore

logger = logging.getLogger(__name__)

FINAL_ACTION_UNCOLLECTIBLE = "uncollectible"
FINAL_ACTION_CANCEL = "cancel"
OPEN_STAGES = (DunningStage.RETRYING, DunningStage.PAST_DUE)


def retry_days() -> list[int]:
    days = sorted({int(day) for day in getattr(settings, "DUNNING_RETRY_DAYS", [1, 3, 5, 7])})
    return days or [1]


def grace_days() -> int:
    return int(getattr(settings, "DUNNING_GRACE_DAYS", 3))


def final_action() -> str:
    action = getattr(settings, "DUNNING_FINAL_ACTION", FINAL_ACTION_UNCOLLECTIBLE)
    return action if action in (FINAL_ACTION_CANCEL, FINAL_ACTION_UNCOLLECTIBLE) else FINAL_ACTION_UNCOLLECTIBLE


def pay_url(invoice: Invoice) -> str:
    return settings.SITE_URL + reverse("portal:invoice_pay", args=[invoice.customer_id, invoice.pk])


def billing_contacts(customer_id: int) -> list[str]:
    """The billing e-mail addresses, or else the owners' and billing admins' e-mails."""
    profile = BillingProfile.objects.filter(customer_id=customer_id).first()
    if profile and profile.billing_emails:
        return list(dict.fromkeys(profile.billing_emails))
    return list(
        Membership.objects.filter(customer_id=customer_id, role__in=[Role.OWNER, Role.BILLING_ADMIN])
        .order_by("user__email")
        .values_list("user__email", flat=True)
        .distinct()
    )


def _subscriptions_for(invoice: Invoice) -> list[Subscription]:
    if invoice.subscription_id:
        return [invoice.subscription]
    return list(Subscription.objects.filter(customer_id=invoice.customer_id, status__in=LIVE_STATUSES))


def _notify(case: DunningCase, *, subject: str, body: str) -> None:
    recipients = billing_contacts(case.customer_id)
    if not recipients:
        return

    def _send() -> None:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)

    transaction.on_commit(_send)


def dunning_payment_failed(*, invoice_id: int, payment_id: int, now: datetime | None = None) -> DunningCase | None:
    """An automatic payment failed (or needs authentication): open the invoice's dunning case on the first failure
    and e-mail the billing contacts a pay link. Idempotent per payment (a repeated report sends nothing new)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = billing_rows_lock(invoices=Q(pk=invoice_id), dunning_cases=Q(invoice_id=invoice_id))
        invoice = locked.invoice
        if invoice is None:
            raise Invoice.DoesNotExist(f"Invoice {invoice_id} does not exist.")
        if invoice.status != InvoiceStatus.OPEN:
            return None
        payment = Payment.objects.get(pk=payment_id)
        case, created = DunningCase.objects.get_or_create(
            invoice=invoice,
            defaults={
                "customer_id": invoice.customer_id,
                "started_at": now,
                "next_retry_at": now + timedelta(days=retry_days()[0]),
            },
        )
        if not created and case.stage not in OPEN_STAGES:
            # A new failure after the case was closed (e.g. paid then disputed) starts over.
            transition_set(case, DunningStage.RETRYING)
            case.started_at = now
            case.retries_done = 0
            case.next_retry_at = now + timedelta(days=retry_days()[0])
            case.closed_at = None
            case.save()
            created = True
        if not created:
            return case
        reason = payment.failure_message or "the card needs the card holder to authenticate the payment"
        audit_record(
            customer=invoice.customer,
            action="dunning.started",
            obj=invoice,
            summary=f"Automatic payment of {invoice} failed ({reason}); retries scheduled, billing contacts e-mailed",
            after={"retry_days": retry_days(), "next_retry_at": case.next_retry_at.isoformat()},
        )
        _notify(
            case,
            subject=f"Payment failed for invoice {invoice}",
            body=(
                f"We could not charge your card for invoice {invoice} "
                f"({_amount(invoice)}): {reason}.\n\n"
                f"Pay it now: {pay_url(invoice)}\n\n"
                f"We will try your default card again on {format_date(case.next_retry_at, invoice.customer.country)}. "
                "You can change your card on the payment methods page.\n"
            ),
        )
    return case


def _amount(invoice: Invoice) -> str:
    """The amount due as the customer's country writes amounts (the e-mails' dates follow the same locale)."""
    return money(invoice.amount_due_minor, invoice.currency, invoice.customer.country)


def dunning_payment_succeeded(*, invoice_id: int, payment_id: int | None = None) -> DunningCase | None:
    """The invoice was paid: close its case and restore past_due subscriptions. Idempotent."""
    with transaction.atomic():
        locked = billing_rows_lock(invoices=Q(pk=invoice_id), dunning_cases=Q(invoice_id=invoice_id))
        case, invoice = locked.dunning_case, locked.invoice
        if case is None or case.stage not in (*OPEN_STAGES, DunningStage.EXHAUSTED):
            return case
        if invoice.status != InvoiceStatus.PAID:
            return case
        was_past_due = case.past_due_at is not None
        transition_set(case, DunningStage.RECOVERED)
        case.closed_at = timezone.now()
        case.next_retry_at = None
        case.save()
        restored = []
        if was_past_due:
            for subscription in _subscriptions_for(invoice):
                if _subscription_restore(subscription, reason=f"invoice {invoice} paid"):
                    restored.append(subscription.pk)
        audit_record(
            customer=invoice.customer,
            action="dunning.recovered",
            obj=invoice,
            summary=f"Invoice {invoice} paid; collection closed" + ("; subscription restored" if restored else ""),
            after={"restored_subscriptions": restored},
        )
    return case


def dunning_run(*, now: datetime | None = None) -> int:
    """Celery beat: perform every due retry. Returns how many cases were handled."""
    now = now or timezone.now()
    due = list(
        DunningCase.objects.filter(stage__in=OPEN_STAGES, next_retry_at__lte=now)
        .order_by("next_retry_at")
        .values_list("pk", flat=True)[:500]
    )
    for case_id in due:
        try:
            dunning_retry(case_id=case_id, now=now)
        except Exception:  # one bad case must not stop the others; the next run tries again
            logger.exception("dunning retry of case %s failed", case_id)
    return len(due)


def dunning_retry(*, case_id: int, now: datetime | None = None) -> DunningCase:
    """One scheduled retry: charge the default card again; then past_due after the grace period, and the final
    action after the last retry. Safe to run twice: the retry slot is claimed under a row lock before charging."""
    now = now or timezone.now()
    with transaction.atomic():
        case = _case_lock(case_id)
        if case.stage not in OPEN_STAGES or case.next_retry_at is None or case.next_retry_at > now:
            return case
        if case.invoice.status != InvoiceStatus.OPEN:
            transition_set(
                case, DunningStage.RECOVERED if case.invoice.status == InvoiceStatus.PAID else DunningStage.CLOSED
            )
            case.closed_at = now
            case.next_retry_at = None
            case.save()
            return case
        # Claim this retry slot before charging, so a concurrent run does not charge the same slot.
        case.retries_done += 1
        schedule = retry_days()
        case.next_retry_at = (
            case.started_at + timedelta(days=schedule[case.retries_done]) if case.retries_done < len(schedule) else None
        )
        case.save()
        audit_record(
            customer=case.invoice.customer,
            action="dunning.retry",
            obj=case.invoice,
            summary=f"Retry {case.retries_done} of {len(schedule)}: charging the default card again for {case.invoice}",
        )
    payment = invoice_collect(invoice_id=case.invoice_id)
    case.refresh_from_db()
    if case.stage not in OPEN_STAGES:
        return case  # paid: dunning_payment_succeeded closed it
    if payment is None:
        audit_record(
            customer=case.invoice.customer,
            action="dunning.retry_skipped",
            obj=case.invoice,
            summary=f"No default card to charge for {case.invoice}; the invoice stays open",
        )
    return _dunning_escalate(case_id=case.pk, now=now)


def _case_lock(case_id: int) -> DunningCase:
    """Lock a case and, first, its invoice (billing.locks order: invoice → dunning case): the escalation marks the
    invoice uncollectible, and applying a payment locks the invoice before the case too."""
    invoice_id = DunningCase.objects.values_list("invoice_id", flat=True).get(pk=case_id)
    locked = billing_rows_lock(invoices=Q(pk=invoice_id), dunning_cases=Q(pk=case_id))
    case = locked.dunning_case
    case.invoice = locked.invoice
    return case


def _dunning_escalate(*, case_id: int, now: datetime) -> DunningCase:
    with transaction.atomic():
        case = _case_lock(case_id)
        invoice = case.invoice
        if case.stage not in OPEN_STAGES or invoice.status != InvoiceStatus.OPEN:
            return case
        if case.past_due_at is None and now - case.started_at >= timedelta(days=grace_days()):
            changed = [s.pk for s in _subscriptions_for(invoice) if _subscription_past_due(s, invoice=invoice)]
            transition_set(case, DunningStage.PAST_DUE)
            case.past_due_at = now
            case.save()
            audit_record(
                customer=invoice.customer,
                action="dunning.past_due",
                obj=invoice,
                summary=f"Invoice {invoice} still unpaid after {grace_days()} days: subscription past due "
                "(access continues)",
                after={"subscriptions": changed},
            )
            invoice_overdue_record(invoice)
            _notify(
                case,
                subject=f"Invoice {invoice} is past due",
                body=(
                    f"Invoice {invoice} ({_amount(invoice)}) is still unpaid, so your subscription is now past due. "
                    f"Your team keeps access for now.\n\nPay it now: {pay_url(invoice)}\n"
                ),
            )
        if case.next_retry_at is None:
            action = final_action()
            canceled = []
            if action == FINAL_ACTION_CANCEL:
                canceled = [s.pk for s in _subscriptions_for(invoice) if _subscription_cancel(s, invoice=invoice)]
            _invoice_mark_uncollectible(invoice)
            transition_set(case, DunningStage.EXHAUSTED)
            case.final_action = action
            case.closed_at = now
            case.save()
            audit_record(
                customer=invoice.customer,
                action="dunning.exhausted",
                obj=invoice,
                summary=f"Final payment attempt for {invoice} failed: invoice marked uncollectible"
                + ("; subscription canceled" if canceled else ""),
                after={"final_action": action, "canceled_subscriptions": canceled},
            )
            _notify(
                case,
                subject=f"Invoice {invoice} could not be collected",
                body=(
                    f"All attempts to charge invoice {invoice} ({_amount(invoice)}) failed."
                    + (" Your subscription has been canceled." if canceled else "")
                    + f"\n\nYou can still pay it: {pay_url(invoice)}\n"
                ),
            )
    return case


# --- Calls into the subscription lifecycle and invoice services ---------------------------------------------------


def _subscription_past_due(subscription: Subscription, *, invoice: Invoice) -> bool:
    """active → past_due (entitlements kept); trialing/canceled subscriptions are left alone."""
    subscription.refresh_from_db()
    if subscription.status != SubscriptionStatus.ACTIVE:
        return False
    subscription_mark_past_due(subscription_id=subscription.pk, reason=f"Invoice {invoice} unpaid")
    return True


def _subscription_restore(subscription: Subscription, *, reason: str) -> bool:
    subscription.refresh_from_db()
    if subscription.status != SubscriptionStatus.PAST_DUE:
        return False
    subscription_restore(subscription_id=subscription.pk, reason=reason.capitalize())
    return True


def _subscription_cancel(subscription: Subscription, *, invoice: Invoice) -> bool:
    subscription.refresh_from_db()
    if subscription.status not in LIVE_STATUSES:
        return False
    subscription_cancel_now(
        subscription_id=subscription.pk,
        actor=None,
        actor_kind=ActorKind.SYSTEM,
        reason=f"Invoice {invoice} could not be collected",
        idempotency_key=f"dunning-invoice-{invoice.pk}",
    )
    return True


def _invoice_mark_uncollectible(invoice: Invoice) -> None:
    invoice_services.invoice_mark_uncollectible(invoice_id=invoice.pk, reason="Dunning: final payment attempt failed")
