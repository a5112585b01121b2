"""Every API error has one shape: {"error": {"code", "message", "field"}} with a correct 4xx status.

Domain errors (SubscriptionError, BillingError and their subclasses) carry .code/.message/.field already; DRF's own
exceptions are translated here. Validation errors name the first offending field (dotted for nested input) and
list all of them under "details".
"""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from billing.exceptions import BillingError
from portal.logging import request_id_var
from subscriptions.exceptions import SubscriptionError
from subscriptions.transient import is_transient

logger = logging.getLogger(__name__)

# Domain codes that are not plain 422 "we understood you, but no".
DOMAIN_STATUS = {
    "permission_denied": status.HTTP_403_FORBIDDEN,
    "not_found": status.HTTP_404_NOT_FOUND,
    "version_conflict": status.HTTP_409_CONFLICT,
    "stale_version": status.HTTP_409_CONFLICT,
    "stale_preview": status.HTTP_409_CONFLICT,
    "concurrent_change": status.HTTP_409_CONFLICT,
    "promotion_code_throttled": status.HTTP_429_TOO_MANY_REQUESTS,
}

STATUS_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "throttled",
}


def domain_error_classes() -> tuple[type[Exception], ...]:
    return (SubscriptionError, BillingError)


def error_body(code: str, message: str, field: str | None = None, details: dict | None = None) -> dict:
    body: dict = {"code": code, "message": message, "field": field}
    if details:
        body["details"] = details
    return {"error": body}


def server_error_body(*, transient: bool = False) -> dict:
    """The body of an API 5xx: never a traceback or Django's HTML page, always the request id to quote to support."""
    if transient:
        body = error_body("temporarily_unavailable", "The service is briefly busy; retry the request in a moment.")
    else:
        body = error_body(
            "server_error", "Something went wrong on our side; nothing was changed. Quote the request id to support."
        )
    body["error"]["request_id"] = request_id_var.get()
    return body


def error_response(status_code: int, code: str, message: str, field: str | None = None, **kwargs) -> Response:
    return Response(error_body(code, message, field), status=status_code, **kwargs)


def _flatten(detail, path: str = "") -> list[tuple[str | None, str, str]]:
    """[(dotted field or None, code, message)] from DRF's nested error detail, in input order."""
    if isinstance(detail, dict):
        out: list[tuple[str | None, str, str]] = []
        for key, value in detail.items():
            sub = path if key in ("non_field_errors", "__all__") else (f"{path}.{key}" if path else str(key))
            out.extend(_flatten(value, sub))
        return out
    if isinstance(detail, list):
        out = []
        for index, value in enumerate(detail):
            if isinstance(value, dict | list):
                out.extend(_flatten(value, f"{path}.{index}" if path else str(index)))
            else:
                out.extend(_flatten(value, path))
        return out
    return [(path or None, str(getattr(detail, "code", None) or "invalid"), str(detail))]


def api_exception_handler(exc, context):
    if isinstance(exc, domain_error_classes()):
        set_rollback()
        code = getattr(exc, "code", "invalid")
        return error_response(
            DOMAIN_STATUS.get(code, status.HTTP_422_UNPROCESSABLE_ENTITY),
            code,
            getattr(exc, "message", str(exc)),
            getattr(exc, "field", None),
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        # A bug or a transient failure (database locked, connection dropped): logged with its traceback, answered in
        # the API's own format. A transient one says 503 + Retry-After so that a client knows a retry is safe.
        set_rollback()
        transient = is_transient(exc)
        logger.error("API %s failed", context["request"].path if context.get("request") else "?", exc_info=exc)
        return Response(
            server_error_body(transient=transient),
            status=status.HTTP_503_SERVICE_UNAVAILABLE if transient else status.HTTP_500_INTERNAL_SERVER_ERROR,
            headers={"Retry-After": "1"} if transient else None,
        )

    set_rollback()
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        errors = _flatten(exc.detail)
        field, code, message = errors[0] if errors else (None, "invalid", "Invalid input.")
        details: dict[str, list[str]] = {}
        for f, _, m in errors:
            details.setdefault(f or "non_field_errors", []).append(m)
        body = error_body(code, message, field, details if len(errors) > 1 else None)
        return Response(body, status=exc.status_code, headers=headers)

    detail = exc.detail
    if isinstance(detail, dict | list):
        errors = _flatten(detail)
        field, code, message = errors[0] if errors else (None, STATUS_CODES.get(exc.status_code, "error"), "Error.")
    else:
        field, message = None, str(detail)
        code = getattr(detail, "code", None) or exc.default_code
    if isinstance(exc, exceptions.Throttled):
        code = "throttled"
    elif isinstance(exc, exceptions.NotAuthenticated):
        code = "not_authenticated"
    elif isinstance(exc, exceptions.PermissionDenied) and code == "permission_denied" and "CSRF" in message:
        code = "csrf_failed"
    return Response(error_body(str(code), message, field), status=exc.status_code, headers=headers)
