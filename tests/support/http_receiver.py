"""A real HTTP server on 127.0.0.1 that records what it receives: the far end of outbound webhooks in tests.

    with HttpReceiver(signature_check=hmac_sha256_check(secret="s3cret")) as receiver:
        receiver.fail_next(2)                      # answer 503 twice, then 200
        ...code under test POSTs to receiver.url("/hooks/provisioning")...
        [first, second, third] = receiver.wait_for_requests(3)
        assert third.signature_valid and third.json()["event"] == "seats.changed"

Every request is recorded (failed and rejected ones too) with its method, path, headers, body, the status the
receiver answered, and whether the signature check passed. The `http_receiver` fixture gives a started one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    status: int  # what the receiver answered
    signature_valid: bool | None  # None when no signature check is configured
    received_at: float = field(default_factory=time.time)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        return json.loads(self.body)


SignatureCheck = Callable[[RecordedRequest], bool]


def hmac_sha256_check(*, secret: str, header: str = "X-Continuum-Signature", prefix: str = "sha256=") -> SignatureCheck:
    """A signature check for `<header>: <prefix><hex HMAC-SHA256 of the raw body keyed with secret>`."""

    def check(request: RecordedRequest) -> bool:
        received = request.header(header) or ""
        if not received.startswith(prefix):
            return False
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(received[len(prefix) :], expected)

    return check


class HttpReceiver:
    """Records requests; answers `status` (200), or `fail_status` for the next N requests after `fail_next(N)`.

    With a `signature_check`, requests that fail it are answered 401 (and recorded with signature_valid=False), as a
    real receiver would. `delay` makes every answer slow (for timeout tests).
    """

    def __init__(
        self,
        *,
        signature_check: SignatureCheck | None = None,
        status: int = 200,
        response_body: bytes = b'{"ok": true}',
        delay: float = 0.0,
    ) -> None:
        self.signature_check = signature_check
        self.status = status
        self.response_body = response_body
        self.delay = delay
        self._failures_left = 0
        self._fail_status = 503
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------------------
    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                receiver._respond(self, body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr access logs
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses -------------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "HttpReceiver is not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # --- behaviour -------------------------------------------------------------------------------------------------
    def fail_next(self, count: int, *, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (a 5xx by default), then go back to succeeding."""
        with self._lock:
            self._failures_left = count
            self._fail_status = status

    def _respond(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {key.lower(): value for key, value in handler.headers.items()}
        probe = RecordedRequest(handler.command, handler.path, headers, body, status=0, signature_valid=None)
        signature_valid = self.signature_check(probe) if self.signature_check else None
        with self._lock:
            if self._failures_left > 0:
                self._failures_left -= 1
                status = self._fail_status
            elif signature_valid is False:
                status = 401
            else:
                status = self.status
            # Recorded before answering: once a client has its response, the request is already in `requests`.
            recorded = RecordedRequest(handler.command, handler.path, headers, body, status, signature_valid)
            self._requests.append(recorded)
            self._lock.notify_all()
        if self.delay:
            time.sleep(self.delay)
        payload = self.response_body if 200 <= status < 300 else json.dumps({"error": status}).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    # --- inspection ------------------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def wait_for_requests(self, count: int, *, timeout: float = 10.0) -> list[RecordedRequest]:
        """Block until at least `count` requests arrived; return them all. Raises TimeoutError with what did arrive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [(r.method, r.path, r.status) for r in self._requests]
                    raise TimeoutError(f"expected {count} request(s) within {timeout}s, got {len(got)}: {got}")
                self._lock.wait(remaining)
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
