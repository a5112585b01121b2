"""Structured logging: one JSON object per line, tagged with the request id, the customer id and the Celery task id.

* `request_id` — set by portal.middleware.RequestIdMiddleware for every request (honours a sane X-Request-ID);
* `customer_id` — the customer the request is about (the `customer_id` of the URL, set in process_view) or the one a
  task works for (its `customer_id` argument);
* `task_id` / `task` — the Celery task being run, set by the task signals below in the worker's pool processes.

Secrets never reach a log line: `RedactSecretsFilter` masks bearer credentials, our API keys and tokens (ck_…, cat_…,
cst_…), Stripe keys and webhook secrets (sk_…, rk_…, whsec_…), passwords in URLs and password fields. It runs on
every handler (settings.LOGGING), so neither our code nor a library's log call can leak one by mistake.
tests/portal/test_logging.py runs a full flow and greps the captured logs for every demo secret.
"""

from __future__ import annotations

import json
import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

from celery import signals

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
customer_id_var: ContextVar[int | None] = ContextVar("customer_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("task_id", default=None)
task_name_var: ContextVar[str | None] = ContextVar("task_name", default=None)

_SECRET_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 [redacted]"),
    (re.compile(r"\b(ck|cat|cst)_[A-Za-z0-9_-]{8,}"), r"\1_[redacted]"),
    (re.compile(r"\b(sk|rk|pk)_(test|live)_[A-Za-z0-9]{6,}"), r"\1_\2_[redacted]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9]{6,}"), "whsec_[redacted]"),
    (re.compile(r"(//[^:/@\s]*):[^@\s]*@"), r"\1:[redacted]@"),  # credentials in a URL
    (
        re.compile(r"(?i)([\"']?(?:password|passwd|secret|api_key|token)[\"']?\s*[:=]\s*)([\"']?)[^\s\"',&}]+"),
        r"\1\2[redacted]",
    ),
]


def redact(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdFilter(logging.Filter):
    """Adds request_id, customer_id and task id/name to every record (kept under its historical name)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.customer_id = customer_id_var.get()
        record.task_id = task_id_var.get()
        record.task_name = task_name_var.get()
        return True


class RedactSecretsFilter(logging.Filter):
    """Masks secrets in the message, its arguments and any traceback text, before a handler formats the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the formatter to report
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatted (and redacted) above; the raw exception would be formatted again
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        customer_id = getattr(record, "customer_id", customer_id_var.get())
        if customer_id is not None:
            payload["customer_id"] = customer_id
        task_id = getattr(record, "task_id", task_id_var.get())
        if task_id:
            payload["task_id"] = task_id
            payload["task"] = getattr(record, "task_name", task_name_var.get())
        if record.exc_info:
            payload["exc_info"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            payload["exc_info"] = record.exc_text
        return json.dumps(payload, default=str)


def customer_id_from(kwargs: dict, args: tuple = ()) -> int | None:
    value = kwargs.get("customer_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# --- Celery: the task id (and the customer it works for) on every line the task logs -------------------------------
_task_tokens: dict[str, tuple] = {}


@signals.task_prerun.connect
def _task_context_enter(task_id=None, task=None, args=None, kwargs=None, **extra) -> None:
    customer_id = customer_id_from(kwargs or {})
    if customer_id is None and args and getattr(task, "name", "").startswith("subscriptions.entitlements_reconcile"):
        customer_id = customer_id_from({"customer_id": args[0]})
    _task_tokens[task_id] = (
        task_id_var.set(task_id),
        task_name_var.set(getattr(task, "name", None)),
        customer_id_var.set(customer_id),
    )


@signals.task_postrun.connect
def _task_context_exit(task_id=None, **extra) -> None:
    tokens = _task_tokens.pop(task_id, None)
    if tokens is None:
        return
    for var, token in zip((task_id_var, task_name_var, customer_id_var), tokens, strict=True):
        try:
            var.reset(token)
        except ValueError:  # set in another context (eager tasks nested in a request): just clear it
            var.set(None)
