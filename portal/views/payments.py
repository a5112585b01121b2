"""Payment methods (saved cards) and paying an open invoice now. Owners and billing admins only.

Card numbers never touch our servers: the page mounts a Stripe.js card Element (loaded from settings.STRIPE_JS_URL)
and confirms a SetupIntent / PaymentIntent in the browser; we only create intents and read their outcome.
All scripts are static files (the portal's CSP forbids inline scripts); data reach them in data- attributes.
"""

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from billing.exceptions import BillingError, NotFound
from billing.models import Invoice, InvoiceStatus, Payment, PaymentMethod, PaymentStatus
from billing.services import payments
from portal.permissions import PAYMENT_METHODS, customer_view, get_for_customer
from subscriptions.inputs import parse_id


def _methods_url(customer_id: int) -> str:
    return reverse("portal:payment_methods", args=[customer_id])


def _pay_url(customer_id: int, invoice_id: int) -> str:
    return reverse("portal:invoice_pay", args=[customer_id, invoice_id])


@customer_view(PAYMENT_METHODS)
def payment_methods(request):
    """List saved cards, with the form to add one (a fresh SetupIntent per visit)."""
    customer = request.customer
    cards = list(PaymentMethod.objects.filter(customer=customer, removed_at__isnull=True).order_by("-is_default", "id"))
    setup, setup_error = None, ""
    backend = payments.payment_backend()
    if backend == payments.BACKEND_STRIPE:
        try:
            setup = payments.payment_method_setup_start(customer_id=customer.pk, actor=request.user)
        except BillingError as error:
            setup_error = error.message
    return render(
        request,
        "portal/payments/payment_methods.html",
        {
            "customer": customer,
            "cards": cards,
            "backend": backend,
            "setup": setup,
            "setup_error": setup_error,
            "stripe_js_url": settings.STRIPE_JS_URL,
            "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
            "seller": settings.SELLER,
        },
    )


@require_POST
@customer_view(PAYMENT_METHODS)
def payment_method_added(request):
    """Stripe.js confirmed the SetupIntent in the browser: record the card it saved."""
    setup_intent_id = request.POST.get("setup_intent", "").strip()
    try:
        method = payments.payment_method_save_from_setup_intent(
            setup_intent_id=setup_intent_id, customer_id=request.customer.pk, actor=request.user
        )
    except NotFound:
        raise Http404("No such card setup.")
    except BillingError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Card saved: {method.label}.")
    return HttpResponseRedirect(_methods_url(request.customer.pk))


@require_POST
@customer_view(PAYMENT_METHODS)
def payment_method_make_default(request, method_id: int):
    get_for_customer(PaymentMethod.objects.filter(removed_at__isnull=True), request.customer, pk=method_id)
    try:
        method = payments.payment_method_set_default(
            customer_id=request.customer.pk, payment_method_id=method_id, actor=request.user
        )
    except BillingError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{method.label} is now your default card.")
    return HttpResponseRedirect(_methods_url(request.customer.pk))


@require_POST
@customer_view(PAYMENT_METHODS)
def payment_method_delete(request, method_id: int):
    method = get_for_customer(PaymentMethod.objects.filter(removed_at__isnull=True), request.customer, pk=method_id)
    try:
        payments.payment_method_remove(customer_id=request.customer.pk, payment_method_id=method.pk, actor=request.user)
    except BillingError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Card removed: {method.label}.")
    return HttpResponseRedirect(_methods_url(request.customer.pk))


@customer_view(PAYMENT_METHODS)
def pay_now(request):
    """The dashboard's "Pay now": the oldest open invoice's pay page, or the open invoices to choose from."""
    open_invoices = list(
        Invoice.objects.filter(customer=request.customer, status=InvoiceStatus.OPEN, amount_due_minor__gt=0).order_by(
            "due_on", "id"
        )
    )
    if len(open_invoices) == 1:
        return HttpResponseRedirect(_pay_url(request.customer.pk, open_invoices[0].pk))
    return render(
        request, "portal/payments/open_invoices.html", {"customer": request.customer, "invoices": open_invoices}
    )


@customer_view(PAYMENT_METHODS)
def invoice_pay(request, invoice_id: int):
    """GET: what is due and how to pay. POST: pay now with the chosen saved card."""
    customer = request.customer
    invoice = get_for_customer(Invoice, customer, pk=invoice_id)
    cards = list(PaymentMethod.objects.filter(customer=customer, removed_at__isnull=True).order_by("-is_default", "id"))
    backend = payments.payment_backend()
    context = {
        "customer": customer,
        "invoice": invoice,
        "cards": cards,
        "backend": backend,
        "payable": invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE) and invoice.amount_due_minor > 0,
        "seller": settings.SELLER,
        "stripe_js_url": settings.STRIPE_JS_URL,
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "pending": Payment.objects.filter(invoice=invoice, status__in=payments.IN_FLIGHT_STATUSES).first(),
    }
    if request.method == "POST" and not context["payable"]:
        messages.info(request, f"Invoice {invoice} has nothing left to pay.")
        return HttpResponseRedirect(_pay_url(customer.pk, invoice.pk))
    if request.method == "POST":
        method_id = parse_id(request.POST.get("payment_method", ""))
        if method_id is None:
            context["error"] = "Choose a card to pay with."
            return render(request, "portal/payments/pay.html", context, status=400)
        try:
            result = payments.invoice_pay_now(
                invoice_id=invoice.pk, customer_id=customer.pk, payment_method_id=method_id, actor=request.user
            )
        except NotFound:
            context["error"] = "Choose one of your saved cards."
            return render(request, "portal/payments/pay.html", context, status=400)
        except BillingError as error:
            context["error"] = error.message
            return render(request, "portal/payments/pay.html", context, status=400)
        if result.requires_action and result.client_secret:
            context.update({"authenticate": result, "pending": result.payment})
            return render(request, "portal/payments/pay.html", context)
        return _after_payment(request, result.payment)
    return render(request, "portal/payments/pay.html", context)


@require_POST
@customer_view(PAYMENT_METHODS)
def invoice_pay_complete(request, invoice_id: int):
    """Stripe.js finished authentication in the browser: read the payment's real outcome from Stripe."""
    invoice = get_for_customer(Invoice, request.customer, pk=invoice_id)
    payment_id = parse_id(request.POST.get("payment", ""))
    if payment_id is None:
        raise Http404("No such payment.")
    payment = get_for_customer(Payment, request.customer, pk=payment_id, invoice=invoice)
    try:
        payment = payments.payment_sync_from_stripe(payment_id=payment.pk)
    except BillingError as error:
        messages.error(request, error.message)
        return HttpResponseRedirect(_pay_url(request.customer.pk, invoice.pk))
    return _after_payment(request, payment)


def _after_payment(request, payment: Payment):
    invoice_id = payment.invoice_id
    if payment.status == PaymentStatus.SUCCEEDED:
        messages.success(request, f"Thank you — {payments.money(payment.amount_minor, payment.currency)} paid.")
    elif payment.status == PaymentStatus.PROCESSING:
        messages.info(request, "Your payment is processing; we will e-mail you when it completes.")
    elif payment.status == PaymentStatus.REQUIRES_ACTION:
        messages.warning(request, "Your bank still needs you to approve the payment.")
    else:
        messages.error(request, payment.failure_message or "The payment did not go through.")
    return HttpResponseRedirect(_pay_url(request.customer.pk, invoice_id))


urlpatterns = [
    path("c/<int:customer_id>/payment-methods/", payment_methods, name="payment_methods"),
    path("c/<int:customer_id>/payment-methods/added/", payment_method_added, name="payment_method_added"),
    path(
        "c/<int:customer_id>/payment-methods/<int:method_id>/default/",
        payment_method_make_default,
        name="payment_method_default",
    ),
    path(
        "c/<int:customer_id>/payment-methods/<int:method_id>/remove/",
        payment_method_delete,
        name="payment_method_remove",
    ),
    path("c/<int:customer_id>/pay/", pay_now, name="pay_now"),
    path("c/<int:customer_id>/invoices/<int:invoice_id>/pay/", invoice_pay, name="invoice_pay"),
    path(
        "c/<int:customer_id>/invoices/<int:invoice_id>/pay/complete/",
        invoice_pay_complete,
        name="invoice_pay_complete",
    ),
]
