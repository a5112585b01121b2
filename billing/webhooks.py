"""POST /stripe/webhook/ — Stripe's signed event deliveries.

Verify the Stripe-Signature header (HMAC with settings.STRIPE_WEBHOOK_SECRET, timestamp within 5 minutes, via
stripe-python's Webhook.construct_event); on failure answer 400 and store nothing. A verified event is stored once by
its Stripe id (a redelivery answers 200 and changes nothing) and processed by the `billing.stripe_event_process`
Celery task, so the answer to Stripe is fast and does not depend on our processing succeeding.
"""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import stripe_client
from billing.services.stripe_events import stripe_event_store
from subscriptions.transient import is_transient

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 512 * 1024


@csrf_exempt  # authenticated by the signature, not by a session
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    payload = request.body
    if len(payload) > MAX_PAYLOAD_BYTES:
        return JsonResponse({"error": "payload too large"}, status=400)
    try:
        event = stripe_client.webhook_event_verify(
            payload=payload,
            signature_header=request.headers.get("Stripe-Signature", ""),
            secret=settings.STRIPE_WEBHOOK_SECRET,
        )
    except stripe_client.WebhookSignatureInvalid as error:
        logger.warning("stripe webhook refused: %s", error.message)
        return JsonResponse({"error": "invalid signature"}, status=400)
    if not event.get("id") or not event.get("type"):
        return JsonResponse({"error": "not an event"}, status=400)
    try:
        stored, created = stripe_event_store(event=event)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # Database locked or gone for a moment: nothing was stored, and Stripe redelivers on any non-2xx answer
        # (with its own backoff, for days), so a 503 is the retry.
        logger.warning("stripe webhook: event %s not stored yet (transient): %s", event.get("id"), exc)
        response = JsonResponse({"error": "temporarily unavailable"}, status=503)
        response["Retry-After"] = "1"
        return response
    return JsonResponse({"received": True, "duplicate": not created, "event": stored.stripe_event_id})
