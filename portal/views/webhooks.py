"""Webhook endpoints for customer owners: register (secret shown once), rotate, test, enable/disable, remove, and the
delivery log with resend. Thin callers of subscriptions.services.webhooks (docs/webhooks.md)."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from portal.permissions import WEBHOOKS, customer_view, get_for_customer
from subscriptions.exceptions import SubscriptionError
from subscriptions.models import SUBSCRIBABLE_EVENT_TYPES, WebhookDelivery, WebhookEndpoint
from subscriptions.services.webhooks import (
    webhook_delivery_resend,
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_send_test,
    webhook_endpoint_update,
)


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


@customer_view(WEBHOOKS)
def webhooks(request):
    customer = request.customer
    context = {"customer": customer, "event_types": SUBSCRIBABLE_EVENT_TYPES, "errors": {}, "form": {}}
    status = 200
    if request.method == "POST":
        form = {
            "url": request.POST.get("url", ""),
            "description": request.POST.get("description", ""),
            "event_types": request.POST.getlist("event_types"),
        }
        try:
            endpoint = webhook_endpoint_create(
                customer=customer,
                url=form["url"],
                event_types=form["event_types"],
                description=form["description"],
                actor=request.user,
            )
        except SubscriptionError as e:
            context.update(errors={e.field or "form": e.message}, error_code=e.code, form=form)
            status = 422
        else:
            context["new_secret"], context["new_endpoint"] = endpoint.secret, endpoint  # shown in this response only
            status = 201
    context["endpoints"] = list(WebhookEndpoint.objects.filter(customer=customer).order_by("pk"))
    return _no_store(render(request, "portal/webhooks.html", context, status=status))


@customer_view(WEBHOOKS)
def webhook_endpoint(request, endpoint_id: int):
    customer = request.customer
    endpoint = get_for_customer(WebhookEndpoint, customer, pk=endpoint_id)
    context = {"customer": customer, "endpoint": endpoint}
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "test":
                webhook_endpoint_send_test(endpoint_id=endpoint.pk, actor=request.user)
                messages.success(request, "Test event sent; its delivery is at the top of the log.")
            elif action == "rotate":
                rotated = webhook_endpoint_rotate_secret(endpoint_id=endpoint.pk, actor=request.user, overlap_hours=24)
                context.update(new_secret=rotated.secret, endpoint=rotated)
            elif action in ("enable", "disable"):
                webhook_endpoint_update(endpoint_id=endpoint.pk, actor=request.user, enabled=action == "enable")
                messages.success(request, f"Endpoint {'enabled' if action == 'enable' else 'disabled'}.")
            elif action == "delete":
                webhook_endpoint_delete(endpoint_id=endpoint.pk, actor=request.user)
                messages.success(request, f"Endpoint {endpoint.url} removed.")
                return redirect("portal:webhooks", customer_id=customer.pk)
            elif action == "resend":
                raw = request.POST.get("delivery", "")
                original = get_for_customer(
                    WebhookDelivery, customer, customer_field="endpoint__customer", pk=int(raw) if raw.isdigit() else 0
                )
                webhook_delivery_resend(delivery_id=original.pk, actor=request.user)
                messages.success(request, f"{original.event.type} queued to be sent again.")
            if "new_secret" not in context:
                return redirect("portal:webhook_endpoint", customer_id=customer.pk, endpoint_id=endpoint.pk)
        except SubscriptionError as e:
            messages.error(request, e.message)
            return redirect("portal:webhook_endpoint", customer_id=customer.pk, endpoint_id=endpoint.pk)
    deliveries = (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-pk")
    )
    context["page"] = Paginator(deliveries, 25).get_page(request.GET.get("page"))
    return _no_store(render(request, "portal/webhook_endpoint.html", context))
