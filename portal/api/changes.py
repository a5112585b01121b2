"""Previews and applied changes in the API's shape, via billing's wrappers (which add tax and bill the change).

`billing.services.changes` wraps `subscriptions.services.changes` with tax and the billing mode; the API calls the
wrappers so subtotal, tax and total are right. The change kinds are the one registry in
subscriptions/services/changes/kinds.py (billing's wrapper refuses an unknown kind).
"""

from django.db import transaction

from billing.services import changes as billed
from subscriptions.models import Subscription


def _discount_shape(result) -> dict:
    """The discount part of a billed preview: its lines, total, description, end and the code."""
    return {
        "discount_lines": [
            {"description": line.description, "amount": line.amount_minor} for line in result.discount_lines
        ],
        "discount_total": result.discount_minor,
        "discount_description": result.discount_description,
        "discount_ends_at": result.discount_ends_at,
        "promotion_code": result.promotion_code,
    }


def _shape(preview, *, subtotal, tax, total, next_recurring, billing_mode="", billing_message="") -> dict:
    return {
        "lines": [
            {
                "description": line.description,
                "period_start": line.period_start,
                "period_end": line.period_end,
                "quantity": line.quantity,
                "unit_amount": line.unit_amount_minor,
                "amount": line.amount_minor,
                "proration": line.proration,
            }
            for line in preview.lines
        ],
        "subtotal": subtotal,
        "tax": tax,
        "total": total,
        "amount_due_now": total,
        "next_recurring_amount": next_recurring,
        "currency": preview.currency,
        "effective_at": preview.effective_at,
        "immediate": preview.immediate,
        "summary": preview.summary,
        "notes": list(preview.notes),
        "billing_mode": billing_mode,
        "billing_message": billing_message,
        "version": preview.version,
    }


def change_preview(*, subscription_id: int, kind: str, **params) -> dict:
    """The preview of `kind` with tax (no writes). Raises the services' SubscriptionError/BillingError for bad input."""
    result = billed.change_preview(subscription_id=subscription_id, kind=kind, **params)
    shape = _shape(
        result.preview,
        subtotal=result.subtotal_minor,
        tax=result.tax_minor,
        total=result.total_minor,
        next_recurring=result.next_recurring_total_minor,
        billing_mode=result.billing_mode,
        billing_message=result.billing_message,
    )
    shape.update(_discount_shape(result))
    # What the subscriptions service compares on apply: the amount before discounts and tax.
    shape["_expected_amount_due"] = result.preview.amount_due_now_minor
    return shape


def change_apply(
    *,
    subscription_id: int,
    kind: str,
    expected_version: int,
    actor,
    actor_kind: str,
    idempotency_key: str | None,
    **params,
) -> dict:
    """Apply `kind` exactly as previewed now, billed by billing's wrapper; returns the preview shape with the
    subscription's new `version` (send it with the next change) and `change_id`.

    The amount previewed here is passed to the service as the expected amount, so what this response shows is what
    was applied (the service refuses with stale_preview otherwise)."""
    preview_params = dict(params)
    shown = change_preview(subscription_id=subscription_id, kind=kind, **preview_params)
    with transaction.atomic():
        common = {
            "subscription_id": subscription_id,
            "expected_version": expected_version,
            "idempotency_key": idempotency_key,
            "expected_amount_due_minor": shown.pop("_expected_amount_due", shown["subtotal"]),
            "actor": actor,
            "actor_kind": actor_kind,
        }
        outcome = billed.change_apply(kind=kind, **common, **params)
        change = outcome.change
        invoice = getattr(outcome, "invoice", None)
        version = Subscription.objects.values_list("version", flat=True).get(pk=subscription_id)
    shown.update(version=version, change_id=change.pk, invoice_id=invoice.pk if invoice is not None else None)
    return shown
