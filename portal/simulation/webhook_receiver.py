"""Outbound webhooks in the simulated year (issue 23): a real HTTP receiver on 127.0.0.1 confirms that every event of
the year reached the customers who asked for them.

`WebhookReceivers`, an extension of the year (year.py `hook`):
- some customers' owners register an endpoint for every event type ("*") right after signing up
  (`webhook_endpoint_create`, as the portal page does; loopback http is the documented test-only setting
  WEBHOOKS_ALLOW_LOOPBACK_HTTP);
- the receiver is an integrator's: it checks `Continuum-Signature` (HMAC-SHA256 of `t.body` with the endpoint's
  secret, `t` within 5 minutes — written here from docs/webhooks.md, not by calling the sender's verify), dedupes by
  event id and keeps, per object, the snapshot with the highest sequence (an older one arriving late is dropped);
- it misbehaves like real receivers: a share of requests is answered 503 before anything is recorded (the event is
  lost to it), and a share is recorded but answered 500 (it will see the event again) — the sender retries with
  backoff, driven by the outbox re-scan every 30 simulated minutes, as beat runs it;
- at the end the receiver recovers and the clock moves on until no delivery is pending.

`violations` then checks, per endpoint: every outbox event of its customer recorded after the endpoint was made was
received (none missing) except the internal types (INTERNAL_EVENT_TYPES, staff endpoints only), nothing else was
(no other customer's event, no test event, no internal one), every request was correctly
signed, an event was received again only after an answer that was not 2xx (at-least-once redelivery, not
duplication), each received event is the outbox's (same type, object, sequence and data), and the receiver's
newest snapshot per object is the outbox's last. Duplicates and late (stale) arrivals are counted for the report.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.db.models import Max, Min

from portal.simulation.violations import Violation
from subscriptions.models import INTERNAL_EVENT_TYPES, DeliveryStatus, Event, EventType, User, WebhookDelivery
from subscriptions.services.webhooks import SIGNATURE_HEADER, webhook_endpoint_create
from subscriptions.tasks import webhook_outbox_rescan_task

ENDPOINT_RATE = 0.25  # of customers: an endpoint for every event type
LOST_RATE = 0.03  # of requests: answered 503 before being recorded
RECORDED_THEN_FAILED_RATE = 0.02  # of requests: recorded, then answered 500 (the sender will redeliver)
RESCAN_EVERY = timedelta(minutes=30)
TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class Receipt:
    endpoint_id: int
    event_id: str
    payload: dict
    signature_valid: bool
    status: int  # what the receiver answered


def signature_valid(secret: str, header: str, body: bytes, now: float) -> bool:
    """docs/webhooks.md: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>` (one v1 per secret)."""
    items = [item.split("=", 1) for item in (header or "").split(",") if "=" in item]
    stamps = [value for key, value in items if key == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit() or abs(now - int(stamps[0])) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), stamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for key, value in items if key == "v1")


class WebhookReceivers:
    def __init__(self, seed: int):
        self.rng = random.Random(f"webhooks-{seed}")
        self.receipts: list[Receipt] = []
        self.secrets: dict[int, str] = {}  # endpoint id -> signing secret (shown once, kept by the integrator)
        self.customer_of: dict[int, int] = {}  # endpoint id -> customer id
        self.first_event_pk: dict[int, int] = {}  # endpoint id -> first outbox row it may receive
        self.latest: dict[tuple[int, str, str], tuple[int, dict]] = {}  # (endpoint, object) -> (sequence, data)
        self.stale = 0
        self.failing = True
        self.injected = Counter()
        self.pending_at_end = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._endpoint_of: dict[int, int] = {}  # customer id (the URL's last part) -> endpoint id

    # -- the receiver ----------------------------------------------------------------------------------------------
    def _handle(self, path: str, headers, body: bytes) -> int:
        with self._lock:
            try:
                endpoint_id = self._endpoint_of[int(path.rstrip("/").rsplit("/", 1)[1])]
                secret = self.secrets[endpoint_id]
            except (ValueError, IndexError, KeyError):
                return 404
            # time.time() is the simulated clock: time-machine moves it for this thread too.
            valid = signature_valid(secret, headers.get(SIGNATURE_HEADER, ""), body, time.time())
            if not valid:
                self.receipts.append(Receipt(endpoint_id, "", {}, False, 401))
                return 401
            roll = self.rng.random() if self.failing else 1.0
            if roll < LOST_RATE:
                self.injected["answered 503, not recorded"] += 1
                return 503
            payload = json.loads(body)
            status = 500 if roll < LOST_RATE + RECORDED_THEN_FAILED_RATE else 200
            if status == 500:
                self.injected["recorded, answered 500"] += 1
            self.receipts.append(Receipt(endpoint_id, payload["id"], payload, True, status))
            key = (endpoint_id, payload["object_type"], str(payload["object_id"]))
            seen = self.latest.get(key)
            if seen is None or payload["sequence"] > seen[0]:
                self.latest[key] = (payload["sequence"], payload["data"])
            elif payload["sequence"] < seen[0]:
                self.stale += 1  # older than one already applied: dropped, as docs/webhooks.md advises
            return status

    def enter(self, sim, stack) -> None:
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = receivers._handle(self.path, self.headers, body)
                answer = b'{"ok": true}' if 200 <= status < 300 else b'{"ok": false}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format, *args) -> None:  # noqa: A002 - silence the access log
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        stack.callback(self._stop)

    def _stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- the year ----------------------------------------------------------------------------------------------------
    def schedule(self, sim, day0) -> None:
        sim._every(day0 + timedelta(minutes=25), RESCAN_EVERY, webhook_outbox_rescan_task)

    def after_signup(self, sim, c, result) -> None:
        if self.rng.random() >= ENDPOINT_RATE:
            return
        last = Event.objects.aggregate(last=Max("pk"))["last"] or 0
        port = self._server.server_address[1]
        # The URL names the customer, so the receiver knows whose secret signs the request (an integrator's routing).
        endpoint = webhook_endpoint_create(
            customer=result.customer,
            url=f"http://127.0.0.1:{port}/hooks/{result.customer.pk}",
            event_types=["*"],
            description="Simulated integrator",
            actor=User.objects.get(pk=c.owner_id),
        )
        self._endpoint_of[result.customer.pk] = endpoint.pk
        self.secrets[endpoint.pk] = endpoint.secret
        self.customer_of[endpoint.pk] = result.customer.pk
        self.first_event_pk[endpoint.pk] = last + 1

    def finish(self, sim, traveller) -> None:
        """The receiver recovers; the clock moves on to each pending retry until nothing is pending (at most 3 days,
        the retry window)."""
        self.failing = False
        deadline = sim.now + timedelta(days=3)
        for _ in range(200):
            due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).aggregate(at=Min("next_attempt_at"))
            if not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists():
                break
            moment = max(sim.now, (due["at"] or sim.now)) + timedelta(seconds=1)
            if moment > deadline:
                break
            traveller.move_to(moment)
            sim.now = moment
            webhook_outbox_rescan_task()
        self.pending_at_end = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).count()

    # -- the invariant -----------------------------------------------------------------------------------------------
    def violations(self, sim) -> list[Violation]:
        found = []
        if self.pending_at_end:
            found.append(Violation("webhooks", "outbox", f"{self.pending_at_end} deliveries still pending at the end"))
        by_endpoint = defaultdict(list)
        for receipt in self.receipts:
            if not receipt.signature_valid:
                found.append(Violation("webhooks", f"endpoint {receipt.endpoint_id}", "a request failed its signature"))
                continue
            by_endpoint[receipt.endpoint_id].append(receipt)
        for endpoint_id, customer_id in self.customer_of.items():
            subject = f"endpoint {endpoint_id} (customer {customer_id})"
            outbox = {
                event.public_id: event
                for event in Event.objects.filter(customer_id=customer_id, pk__gte=self.first_event_pk[endpoint_id])
                .exclude(type=EventType.WEBHOOK_TEST)
                .exclude(type__in=INTERNAL_EVENT_TYPES)  # staff endpoints only: one arriving here counts as foreign
                .order_by("pk")
            }
            receipts = by_endpoint.get(endpoint_id, [])
            answered_ok: set[str] = set()
            for receipt in receipts:
                if receipt.event_id in answered_ok:
                    found.append(
                        Violation("webhooks", subject, f"{receipt.event_id} delivered again after a 2xx answer")
                    )
                if 200 <= receipt.status < 300:
                    answered_ok.add(receipt.event_id)
                event = outbox.get(receipt.event_id)
                if event is None:
                    found.append(Violation("webhooks", subject, f"received {receipt.event_id}, not one of its events"))
                    continue
                payload = receipt.payload
                if (payload["type"], payload["object_type"], str(payload["object_id"]), payload["sequence"]) != (
                    event.type,
                    event.object_type,
                    event.object_id,
                    event.sequence,
                ) or payload["data"] != json.loads(json.dumps(event.data)):
                    found.append(Violation("webhooks", subject, f"{receipt.event_id} differs from the outbox row"))
            missing = [event for public_id, event in outbox.items() if public_id not in answered_ok]
            if missing:
                shown = ", ".join(f"{e.type} {e.public_id}" for e in missing[:5])
                found.append(Violation("webhooks", subject, f"{len(missing)} event(s) never delivered: {shown}"))
            # Per object, after dedupe: the outbox's sequences, and the newest snapshot is the outbox's last.
            last = {}
            for event in outbox.values():
                key = (event.object_type, event.object_id)
                if key not in last or event.sequence > last[key].sequence:
                    last[key] = event
            for (object_type, object_id), event in last.items():
                kept = self.latest.get((endpoint_id, object_type, object_id))
                if kept is None or kept[0] != event.sequence or kept[1] != json.loads(json.dumps(event.data)):
                    found.append(
                        Violation(
                            "webhooks",
                            subject,
                            f"{object_type} {object_id}: receiver ends at sequence {kept[0] if kept else None}, "
                            f"outbox at {event.sequence}",
                        )
                    )
        return found

    def figures(self, sim) -> dict:
        valid = [r for r in self.receipts if r.signature_valid]
        unique = {(r.endpoint_id, r.event_id) for r in valid}
        return {
            "webhook_endpoints": len(self.secrets),
            "webhook_requests": len(self.receipts) + sum(v for k, v in self.injected.items() if "not recorded" in k),
            "webhook_events_received": len(unique),
            "webhook_duplicates": len(valid) - len(unique),
            "webhook_stale_arrivals": self.stale,
            "webhook_injected_failures": dict(self.injected),
            "webhook_event_types": dict(Counter(r.payload["type"] for r in valid).most_common()),
        }
