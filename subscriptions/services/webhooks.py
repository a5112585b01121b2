"""Outbound webhooks: endpoint management, fan-out of outbox events, signed delivery with retries (docs/webhooks.md).

Guarantees:
* at least once: an event is in the outbox from the change's own transaction; `webhook_outbox_rescan` (beat) fans
  out any event whose after-commit message was lost and re-queues any due delivery whose worker died (its claim
  expired), so a killed worker loses nothing;
* a delivery is sent by one worker at a time (a claim with a lease, taken by a conditional UPDATE), so the same
  delivery is not POSTed twice concurrently; a fan-out happens once per (endpoint, event) (unique constraint);
* SSRF: every URL is checked when saved and again, with the addresses actually connected to, at every attempt.
"""

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import socket
import ssl
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from subscriptions.dispatch import enqueue_on_commit
from subscriptions.exceptions import WebhookError, WebhookEventTypesInvalid, WebhookUrlRefused
from subscriptions.models import (
    STAFF_SUBSCRIBABLE_EVENT_TYPES,
    SUBSCRIBABLE_EVENT_TYPES,
    Customer,
    DeliveryKind,
    DeliveryStatus,
    Event,
    EventType,
    Membership,
    Role,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from subscriptions.models.webhooks import webhook_secret_new
from subscriptions.secretbox import secret_needs_reencrypt
from subscriptions.services.audit import audit_record
from subscriptions.services.events import API_VERSION, iso

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Continuum-Signature"
RESPONSE_EXCERPT_BYTES = 1024
MAX_ENDPOINTS_PER_CUSTOMER = 16
MAX_OVERLAP_HOURS = 7 * 24


def _setting(name: str, default):
    return getattr(settings, name, default)


def timeout_seconds() -> float:
    return float(_setting("WEBHOOK_TIMEOUT_SECONDS", 5.0))


def retry_window() -> timedelta:
    return timedelta(seconds=float(_setting("WEBHOOK_RETRY_WINDOW_SECONDS", 3 * 24 * 3600)))


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: exponential (base · 2^(n-1)), capped, with "equal
    jitter" so that endpoints failing together (a receiver outage) do not retry in lockstep."""
    base = float(_setting("WEBHOOK_RETRY_BASE_SECONDS", 30.0))
    cap = float(_setting("WEBHOOK_RETRY_MAX_SECONDS", 6 * 3600.0))
    ceiling = min(cap, base * (2 ** max(0, attempts - 1)))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


# --- URLs (SSRF) ---------------------------------------------------------------------------------------------------


def _loopback_allowed() -> bool:
    # Test-only (portal/settings_test.py); portal/settings.py refuses it with DJANGO_ENV=production.
    return bool(_setting("WEBHOOKS_ALLOW_LOOPBACK_HTTP", False))


def webhook_url_check(url) -> list[str]:
    """The IP addresses `url` resolves to, or WebhookUrlRefused with a code: `url_invalid`, `url_not_https`,
    `url_credentials`, `url_unresolvable`, `url_private_address`.

    Only https:// to public addresses; private, loopback, link-local, shared, reserved and multicast addresses are
    refused whatever name points to them. With WEBHOOKS_ALLOW_LOOPBACK_HTTP (tests), http:// and loopback are allowed.
    """
    if not isinstance(url, str) or not url.strip() or len(url) > 500 or any(c.isspace() for c in url.strip()):
        raise WebhookUrlRefused("Enter a valid URL (at most 500 characters).", code="url_invalid")
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookUrlRefused("Enter a valid URL.", code="url_invalid")
    allow_loopback = _loopback_allowed()
    if parts.scheme != "https" and not (allow_loopback and parts.scheme == "http"):
        raise WebhookUrlRefused("Endpoints must use https://.", code="url_not_https")
    if parts.username or parts.password:
        raise WebhookUrlRefused("Put credentials in your receiver, not in the URL.", code="url_credentials")
    host = parts.hostname
    if not host:
        raise WebhookUrlRefused("Enter a URL with a host name.", code="url_invalid")
    try:
        infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError, ValueError):
        raise WebhookUrlRefused(f"{host} does not resolve to an address.", code="url_unresolvable")
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if not address.is_global and not (allow_loopback and address.is_loopback):
            raise WebhookUrlRefused(
                f"{host} resolves to a private, loopback or link-local address ({address}); endpoints must be public.",
                code="url_private_address",
            )
        addresses.append(str(address))
    if not addresses:
        raise WebhookUrlRefused(f"{host} does not resolve to an address.", code="url_unresolvable")
    return addresses


# --- signing ---------------------------------------------------------------------------------------------------------


def webhook_sign(*, secrets: list[str], timestamp: int, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`, one v1 per secret (two during a rotation)."""
    message = str(timestamp).encode() + b"." + body
    digests = [hmac.new(secret.encode(), message, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}", *(f"v1={digest}" for digest in digests)])


def webhook_verify(*, secret: str, header: str, body: bytes, tolerance: int = 300, now: float | None = None) -> bool:
    """Receiver side (docs/webhooks.md has the same in a standalone example): any v1 matches, t within tolerance."""
    items = [item.split("=", 1) for item in (header or "").split(",") if "=" in item]
    timestamps = [value for key, value in items if key == "t"]
    signatures = [value for key, value in items if key == "v1"]
    if len(timestamps) != 1 or not signatures or not timestamps[0].isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamps[0])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


def event_payload(event: Event) -> dict:
    return {
        "id": event.public_id,
        "type": event.type,
        "api_version": API_VERSION,
        "created": iso(event.created_at),
        "customer": event.customer_id,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "sequence": event.sequence,
        "data": event.data,
    }


def event_body(event: Event) -> bytes:
    return json.dumps(event_payload(event), separators=(",", ":"), sort_keys=True).encode()


# --- HTTP ------------------------------------------------------------------------------------------------------------


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the address we checked (no second DNS lookup an attacker could answer differently), with SNI and
    certificate verification for the host name."""

    def __init__(self, host: str, port: int | None, *, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _post(url: str, address: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, bytes, str]:
    """(status, first 1 KB of the body, error). Redirects are not followed (a 3xx is a failure)."""
    parts = urlsplit(url)
    timeout = timeout_seconds()
    if parts.scheme == "https":
        connection: http.client.HTTPConnection = _PinnedHTTPSConnection(
            parts.hostname, parts.port, address=address, timeout=timeout
        )
    else:
        connection = http.client.HTTPConnection(address, parts.port or 80, timeout=timeout)
    host_header = parts.hostname + (f":{parts.port}" if parts.port else "")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", path, body=body, headers={**headers, "Host": host_header})
        response = connection.getresponse()
        return response.status, response.read(RESPONSE_EXCERPT_BYTES), ""
    except TimeoutError:
        return None, b"", f"No answer within {timeout:g} s."
    except (OSError, http.client.HTTPException) as exc:
        return None, b"", f"Could not deliver: {exc.__class__.__name__}: {exc}"[:300]
    finally:
        connection.close()


# --- fan-out ---------------------------------------------------------------------------------------------------------


def webhook_events_dispatch(*, public_ids: list[str]) -> list[int]:
    """Create one delivery per (enabled endpoint that wants it, event) for these outbox events; mark them dispatched.

    Idempotent (unique fan-out, `dispatched_at`): the after-commit message and the re-scan may both run it. Returns
    the pending, never-tried deliveries of these events, for the caller to queue.
    """
    with transaction.atomic():
        events = list(
            Event.objects.select_for_update()
            .filter(public_id__in=public_ids, dispatched_at__isnull=True)
            .exclude(type=EventType.WEBHOOK_TEST)
            .order_by("pk")
        )
        if events:
            # Only endpoints that can want one of these events: staff's (no customer) and those of the events'
            # customers — not every customer's endpoint for every event (`WebhookEndpoint.wants` decides the rest).
            customer_ids = {event.customer_id for event in events if event.customer_id is not None}
            endpoints = list(
                WebhookEndpoint.objects.filter(enabled=True).filter(
                    Q(customer__isnull=True) | Q(customer_id__in=customer_ids)
                )
            )
            now = timezone.now()
            deliveries = [
                WebhookDelivery(endpoint=endpoint, event=event, kind=DeliveryKind.EVENT, created_at=now)
                for event in events
                for endpoint in endpoints
                if endpoint.wants(event_type=event.type, customer_id=event.customer_id)
            ]
            WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
            Event.objects.filter(pk__in=[event.pk for event in events]).update(dispatched_at=now)
    return list(
        WebhookDelivery.objects.filter(
            event__public_id__in=public_ids, status=DeliveryStatus.PENDING, attempts=0, claimed_until__isnull=True
        ).values_list("pk", flat=True)
    )


def webhook_outbox_rescan(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Beat: fan out events whose after-commit message never ran (older than a grace period), and return the due
    deliveries nobody is sending (never tried, retry time reached, or claimed by a worker that died)."""
    now = now or timezone.now()
    grace = timedelta(seconds=float(_setting("WEBHOOK_RESCAN_GRACE_SECONDS", 30)))
    # Oldest first by created_at (the partial index event_undispatched's order): ordered by pk, SQLite walked the
    # whole outbox in rowid order instead, a cost that grew with every event ever recorded.
    stale = list(
        Event.objects.filter(dispatched_at__isnull=True, created_at__lte=now - grace)
        .exclude(type=EventType.WEBHOOK_TEST)
        .order_by("created_at", "pk")
        .values_list("public_id", flat=True)[:limit]
    )
    if stale:
        webhook_events_dispatch(public_ids=stale)
    return list(
        WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )


# --- one attempt -----------------------------------------------------------------------------------------------------


def _claim(delivery_id: int, now: datetime) -> bool:
    lease = now + timedelta(seconds=float(_setting("WEBHOOK_CLAIM_SECONDS", 60)))
    return bool(
        WebhookDelivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=lease)
    )


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Send a due delivery once (if no other worker holds it) and log the attempt: status, latency, 1 KB of answer.

    On failure the next attempt is scheduled with backoff (`next_attempt_at`); once the retry window (3 days) is
    over the delivery fails, and an endpoint that has not succeeded since is disabled and its owner e-mailed.
    Returns the delivery, or None when it was not due or someone else holds it.
    """
    if not _claim(delivery_id, timezone.now()):
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint", "event").get(pk=delivery_id)
    endpoint, event = delivery.endpoint, delivery.event
    if not endpoint.enabled and delivery.kind == DeliveryKind.EVENT:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.FAILED, claimed_until=None, last_error="The endpoint is disabled."
        )
        return WebhookDelivery.objects.get(pk=delivery_id)
    body = event_body(event)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Continuum-Webhooks/1",
        SIGNATURE_HEADER: webhook_sign(secrets=endpoint.signing_secrets(), timestamp=timestamp, body=body),
        "Continuum-Event-Id": event.public_id,
        "Continuum-Event-Type": event.type,
        "Continuum-Delivery-Id": str(delivery.pk),
    }
    started = time.monotonic()
    try:
        addresses = webhook_url_check(endpoint.url)  # again now: DNS may point elsewhere than when it was saved
    except WebhookUrlRefused as refused:
        status, excerpt, error = None, b"", f"{refused.code}: {refused.message}"[:300]
    else:
        status, excerpt, error = _post(endpoint.url, addresses[0], body, headers)
    latency_ms = int((time.monotonic() - started) * 1000)
    succeeded = status is not None and 200 <= status < 300
    if status is not None and not succeeded and not error:
        error = f"HTTP {status}"
    return _attempt_record(delivery_id, status, excerpt, error, latency_ms, succeeded)


def _attempt_record(delivery_id, status, excerpt: bytes, error: str, latency_ms: int, succeeded: bool):
    now = timezone.now()
    disabled = False
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery_id)
        WebhookAttempt.objects.create(
            delivery=delivery,
            attempted_at=now,
            succeeded=succeeded,
            status_code=status,
            latency_ms=latency_ms,
            response_excerpt=excerpt.decode("utf-8", errors="replace"),
            error=error,
        )
        delivery.attempts += 1
        delivery.claimed_until = None
        delivery.last_status_code = status
        delivery.last_error = "" if succeeded else error
        if succeeded:
            delivery.status = DeliveryStatus.SUCCEEDED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
            WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(last_success_at=now)
        else:
            delay = timedelta(seconds=retry_delay(delivery.attempts))
            if delivery.kind == DeliveryKind.TEST or now + delay > delivery.created_at + retry_window():
                delivery.status = DeliveryStatus.FAILED
                delivery.next_attempt_at = None
                if delivery.kind == DeliveryKind.EVENT:
                    disabled = _disable_if_failing(delivery.endpoint, since=delivery.created_at, now=now)
            else:
                delivery.next_attempt_at = now + delay
        delivery.save()
    if disabled:
        logger.warning("Webhook endpoint %s disabled after failing for %s", delivery.endpoint_id, retry_window())
    return delivery


def _disable_if_failing(endpoint: WebhookEndpoint, *, since: datetime, now: datetime) -> bool:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if not endpoint.enabled or (endpoint.last_success_at and endpoint.last_success_at >= since):
        return False
    days = retry_window().total_seconds() / 86400
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = f"Every delivery failed for {days:g} days; re-enable it once the receiver works."[:300]
    endpoint.save(update_fields=["enabled", "disabled_at", "disabled_reason", "updated_at"])
    audit_record(
        customer=endpoint.customer,
        action="webhook_endpoint.disabled",
        obj=endpoint,
        summary=f"Webhook endpoint {endpoint.url} disabled after failing for {days:g} days"[:300],
        after={"enabled": False},
    )
    recipients = _owner_emails(endpoint)
    if recipients:
        transaction.on_commit(lambda: _send_disabled_email(endpoint, recipients))
    return True


def _owner_emails(endpoint: WebhookEndpoint) -> list[str]:
    if endpoint.customer_id is None:
        fallback = _setting("SUPPORT_EMAIL", "")
        return [endpoint.created_by.email] if endpoint.created_by_id else ([fallback] if fallback else [])
    return sorted(
        Membership.objects.filter(customer_id=endpoint.customer_id, role=Role.OWNER).values_list(
            "user__email", flat=True
        )
    )


def _send_disabled_email(endpoint: WebhookEndpoint, recipients: list[str]) -> None:
    site = _setting("SITE_URL", "")
    try:
        send_mail(
            subject="Your Continuum webhook endpoint was disabled",
            message=(
                f"We could not deliver events to {endpoint.url} for {retry_window().days} days, so we stopped "
                "sending to it. Events that happened meanwhile are in the delivery log, where you can resend them "
                f"once your receiver works again, then re-enable the endpoint:\n\n{site}/account/webhooks/\n"
            ),
            from_email=None,
            recipient_list=recipients,
        )
    except Exception:  # the disable is committed; a mail server hiccup must not undo it
        logger.exception("Could not e-mail the owners of webhook endpoint %s", endpoint.pk)


# --- endpoints (customer owners in the portal and API; staff in the admin) ------------------------------------------


def _validate_event_types(event_types, *, staff_endpoint: bool) -> list[str]:
    """The types an endpoint may choose: a customer's endpoint the customer-facing catalogue, a staff endpoint (no
    customer) also the internal types (INTERNAL_EVENT_TYPES), which a customer's endpoint is refused."""
    if not isinstance(event_types, list | tuple) or not event_types:
        raise WebhookEventTypesInvalid('Choose at least one event type (or "*" for all of them).')
    allowed = STAFF_SUBSCRIBABLE_EVENT_TYPES if staff_endpoint else SUBSCRIBABLE_EVENT_TYPES
    cleaned = set()
    for value in event_types:
        if value == "*":
            return ["*"]
        if not isinstance(value, str) or value not in allowed:
            raise WebhookEventTypesInvalid(f"“{value}” is not an event type; see docs/webhooks.md for the catalogue.")
        cleaned.add(value)
    return sorted(cleaned)


def _validate_description(description) -> str:
    if not isinstance(description, str) or len(description) > 200:
        raise WebhookError("Describe the endpoint in at most 200 characters.", field="description")
    return description.strip()


def webhook_endpoint_create(
    *,
    customer: Customer | None,
    url,
    event_types,
    description="",
    actor: User | None,
    actor_kind: str | None = None,
) -> WebhookEndpoint:
    """Register an endpoint (customer None: staff, every customer's events). The returned row carries the signing
    secret; callers show it once. Refuses unsafe URLs (coded), unknown event types and more than 16 per customer."""
    url = url.strip() if isinstance(url, str) else url
    webhook_url_check(url)
    types = _validate_event_types(event_types, staff_endpoint=customer is None)
    description = _validate_description(description)
    with transaction.atomic():
        if customer is not None:
            Customer.objects.select_for_update().get(pk=customer.pk)
            if WebhookEndpoint.objects.filter(customer=customer).count() >= MAX_ENDPOINTS_PER_CUSTOMER:
                raise WebhookError(
                    f"A customer can have at most {MAX_ENDPOINTS_PER_CUSTOMER} webhook endpoints; remove one first.",
                    field="url",
                )
        endpoint = WebhookEndpoint.objects.create(
            customer=customer, url=url, event_types=types, description=description, created_by=actor
        )
        audit_record(
            customer=customer,
            actor=actor,
            actor_kind=actor_kind,
            action="webhook_endpoint.created",
            obj=endpoint,
            summary=f"Webhook endpoint {url} added"[:300],
            after={"url": url, "event_types": types},
        )
    return endpoint


def _lock_endpoint(endpoint_id: int) -> WebhookEndpoint:
    return WebhookEndpoint.objects.select_for_update(of=("self",)).select_related("customer").get(pk=endpoint_id)


def webhook_endpoint_update(
    *,
    endpoint_id: int,
    actor: User | None,
    actor_kind: str | None = None,
    url=None,
    event_types=None,
    description=None,
    enabled=None,
) -> WebhookEndpoint:
    """Change an endpoint's URL, event types, description or enabled flag (re-enabling clears the disable reason)."""
    if url is not None:
        url = url.strip() if isinstance(url, str) else url
        webhook_url_check(url)
    if description is not None:
        description = _validate_description(description)
    if enabled is not None and not isinstance(enabled, bool):
        raise WebhookError("enabled is true or false.", field="enabled")
    with transaction.atomic():
        endpoint = _lock_endpoint(endpoint_id)
        types = (
            _validate_event_types(event_types, staff_endpoint=endpoint.customer_id is None)
            if event_types is not None
            else None
        )
        before = {"url": endpoint.url, "event_types": endpoint.event_types, "enabled": endpoint.enabled}
        if url is not None:
            endpoint.url = url
        if types is not None:
            endpoint.event_types = types
        if description is not None:
            endpoint.description = description
        if enabled is not None and enabled != endpoint.enabled:
            endpoint.enabled = enabled
            endpoint.disabled_at = None if enabled else timezone.now()
            endpoint.disabled_reason = "" if enabled else "Disabled by its owner."
        endpoint.save()
        after = {"url": endpoint.url, "event_types": endpoint.event_types, "enabled": endpoint.enabled}
        if after != before or description is not None:
            audit_record(
                customer=endpoint.customer,
                actor=actor,
                actor_kind=actor_kind,
                action="webhook_endpoint.updated",
                obj=endpoint,
                summary=f"Webhook endpoint {endpoint.url} changed"[:300],
                before=before,
                after=after,
            )
    return endpoint


def webhook_endpoint_rotate_secret(
    *, endpoint_id: int, actor: User | None, overlap_hours=24, actor_kind: str | None = None
) -> WebhookEndpoint:
    """A new signing secret; for `overlap_hours` (0-168) deliveries carry a signature with the old one too, so the
    receiver can switch without dropping events. The returned row carries the new secret; callers show it once."""
    if isinstance(overlap_hours, bool) or not isinstance(overlap_hours, int) or not 0 <= overlap_hours <= 168:
        raise WebhookError("The overlap is a whole number of hours from 0 to 168.", field="overlap_hours")
    with transaction.atomic():
        endpoint = _lock_endpoint(endpoint_id)
        endpoint.previous_secret = endpoint.secret if overlap_hours else ""
        endpoint.previous_secret_expires_at = timezone.now() + timedelta(hours=overlap_hours) if overlap_hours else None
        endpoint.secret = webhook_secret_new()
        endpoint.save()
        audit_record(
            customer=endpoint.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="webhook_endpoint.secret_rotated",
            obj=endpoint,
            summary=f"Signing secret of {endpoint.url} rotated; the old one works for {overlap_hours} h"[:300],
            after={"overlap_hours": overlap_hours},
        )
    return endpoint


def webhook_endpoint_delete(*, endpoint_id: int, actor: User | None, actor_kind: str | None = None) -> None:
    with transaction.atomic():
        endpoint = _lock_endpoint(endpoint_id)
        audit_record(
            customer=endpoint.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="webhook_endpoint.deleted",
            obj=endpoint,
            summary=f"Webhook endpoint {endpoint.url} removed"[:300],
            before={"url": endpoint.url, "event_types": endpoint.event_types},
        )
        endpoint.delete()


def _enqueue_attempts_after_commit(delivery_ids: list[int]) -> None:
    # A refused hand-off leaves the delivery pending: the outbox re-scan attempts it (subscriptions/dispatch.py).
    for delivery_id in delivery_ids:
        enqueue_on_commit("subscriptions.webhook_delivery_attempt", delivery_id=delivery_id)


def webhook_endpoint_send_test(
    *, endpoint_id: int, actor: User | None, actor_kind: str | None = None
) -> WebhookDelivery:
    """Send a `webhook_endpoint.test` event to this endpoint only (also when disabled), once, without retries."""
    with transaction.atomic():
        endpoint = _lock_endpoint(endpoint_id)
        now = timezone.now()
        event = Event.objects.create(
            type=EventType.WEBHOOK_TEST,
            customer=endpoint.customer,
            object_type="webhook_endpoint",
            object_id=str(endpoint.pk),
            sequence=1 + Event.objects.filter(object_type="webhook_endpoint", object_id=str(endpoint.pk)).count(),
            data={"object": "webhook_endpoint", "id": endpoint.pk, "url": endpoint.url, "message": "It works."},
            created_at=now,
            dispatched_at=now,
        )
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint, event=event, kind=DeliveryKind.TEST, created_at=now, requested_by=actor
        )
        audit_record(
            customer=endpoint.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="webhook_endpoint.test_sent",
            obj=endpoint,
            summary=f"Test event sent to {endpoint.url}"[:300],
        )
        _enqueue_attempts_after_commit([delivery.pk])
    return delivery


def webhook_delivery_resend(*, delivery_id: int, actor: User | None, actor_kind: str | None = None) -> WebhookDelivery:
    """Send the event of a delivery again to its endpoint, as a new delivery with its own retries."""
    with transaction.atomic():
        original = WebhookDelivery.objects.select_related("endpoint__customer", "event").get(pk=delivery_id)
        try:
            delivery = WebhookDelivery.objects.create(
                endpoint=original.endpoint,
                event=original.event,
                kind=DeliveryKind.RESEND if original.kind != DeliveryKind.TEST else DeliveryKind.TEST,
                created_at=timezone.now(),
                requested_by=actor,
            )
        except IntegrityError:  # pragma: no cover - the constraint covers kind=event only
            raise WebhookError("This event is already being sent.")
        audit_record(
            customer=original.endpoint.customer,
            actor=actor,
            actor_kind=actor_kind,
            action="webhook_delivery.resent",
            obj=delivery,
            summary=f"{original.event.type} {original.event.public_id} resent to {original.endpoint.url}"[:300],
        )
        _enqueue_attempts_after_commit([delivery.pk])
    return delivery


def webhook_secrets_reencrypt() -> int:
    """Re-encrypt every endpoint's signing secrets under the current (first) WEBHOOK_SECRET_KEYS key; the count of
    rows changed. The middle step of a key rotation (docs/webhooks.md "Secrets at rest"); running it twice changes
    nothing the second time. Each row is locked while it is rewritten, so a concurrent rotation is not undone."""
    changed = 0
    for endpoint_id in WebhookEndpoint.objects.order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
            tokens = [endpoint.secret_encrypted, endpoint.previous_secret_encrypted]
            if not any(token and secret_needs_reencrypt(token) for token in tokens):
                continue
            endpoint.secret = endpoint.secret
            endpoint.previous_secret = endpoint.previous_secret
            endpoint.save(update_fields=["secret_encrypted", "previous_secret_encrypted"])
            changed += 1
    return changed
