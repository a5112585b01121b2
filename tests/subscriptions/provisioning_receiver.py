"""A real HTTP receiver on 127.0.0.1 for the provisioning webhook: verifies signatures, can fail or stall on demand.

Used by tests/subscriptions/provisioning/test_provisioning.py and tests/integration/test_provisioning.py.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from subscriptions.provisioners.webhook import webhook_verify

WEBHOOK_SECRET = "whsec-test-provisioning"


class Receiver:
    def __init__(self, secret: str = WEBHOOK_SECRET):
        self.secret = secret
        self.accepted: list[dict] = []
        self.failed = 0
        self.rejected = 0
        self.fail_next = 0
        self.stall_next = 0  # answer the next N requests only after `stall_seconds`
        self.stall_seconds = 30.0
        self.delay_seconds = 0.0  # answer every request this much later (holds a reconcile mid-run)
        self.stalled = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/entitlements"

    def settings(self) -> dict:
        return {
            "PROVISIONER_BACKEND": "webhook",
            "PROVISIONER_WEBHOOK_URL": self.url,
            "PROVISIONER_WEBHOOK_SECRET": self.secret,
            "PROVISIONER_WEBHOOK_TIMEOUT": 5.0,
        }

    def env(self) -> dict:
        return {key: str(value) for key, value in self.settings().items()}

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = webhook_verify(
                    secret=receiver.secret,
                    timestamp=self.headers.get("Continuum-Timestamp", ""),
                    signature=self.headers.get("Continuum-Signature", ""),
                    body=body,
                )
                with receiver.lock:
                    if not ok:
                        receiver.rejected += 1
                        status = 401
                    elif receiver.stall_next > 0:
                        receiver.stall_next -= 1
                        status = None
                    elif receiver.fail_next > 0:
                        receiver.fail_next -= 1
                        receiver.failed += 1
                        status = 503
                    else:
                        receiver.accepted.append(json.loads(body))
                        status = 200
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                if status is None:
                    receiver.stalled.set()
                    time.sleep(receiver.stall_seconds)
                    status = 503
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status == 200 else b'{"ok": false}')

        return Handler

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
