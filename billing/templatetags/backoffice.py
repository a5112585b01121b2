"""The back office's work queues on the admin index: what is waiting for the signed-in staff member's role."""

from django import template
from django.urls import reverse

from billing.models import ExemptionStatus, Invoice, InvoiceStatus, TaxExemption
from subscriptions.models import Entitlement, EntitlementState

register = template.Library()


@register.simple_tag(takes_context=True)
def backoffice_queues(context) -> list[dict]:
    """[{label, count, url}] for the queues this user may work on (one COUNT query each)."""
    user = context["request"].user
    queues = []
    if user.has_perm("billing.change_invoice"):
        queues.append(
            {
                "label": "Invoices held for review",
                "count": Invoice.objects.filter(status=InvoiceStatus.HELD).count(),
                "url": reverse("admin:billing_invoice_changelist") + "?status__exact=held",
            }
        )
    if user.has_perm("billing.change_taxexemption"):
        queues.append(
            {
                "label": "Tax exemptions awaiting review",
                "count": TaxExemption.objects.filter(status=ExemptionStatus.SUBMITTED).count(),
                "url": reverse("admin:billing_taxexemption_changelist") + "?status__exact=submitted",
            }
        )
    if user.has_perm("subscriptions.view_entitlement"):
        queues.append(
            {
                "label": "Customers with failed provisioning",
                "count": Entitlement.objects.filter(state=EntitlementState.FAILED)
                .values("customer_id")
                .distinct()
                .count(),
                "url": reverse("admin:subscriptions_entitlement_changelist") + "?state__exact=failed",
            }
        )
    return queues
