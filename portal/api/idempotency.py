"""`Idempotency-Key` on state-changing POSTs.

The first successful response for a (principal, key) is stored with a hash of the request (method, path, body)
and replayed for 24 hours: a retried request changes nothing and answers exactly as the first one did. The same key
with a different request is a 422. Error responses are not stored, so a client can fix the problem and retry with
the same key. The record is written in the same transaction as the change, so "changed but not recorded" cannot
happen; a concurrent duplicate waits on the unique constraint and then gets a 409 or the replay.
"""

import functools
import hashlib
import json
import re
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from portal.api.exceptions import error_response
from portal.api.principal import principal_of
from portal.models import IdempotencyRecord

HEADER = "Idempotency-Key"
LIFETIME = timedelta(hours=24)

KEY_PATTERN = re.compile(r"^[!-~]{1,255}$")  # visible ASCII, no spaces: a UUID is a good choice

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER,
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": KEY_PATTERN.pattern},
    OpenApiParameter.HEADER,
    required=False,
    description="Retry safely: the same key and body within 24 h return the first response and change nothing; "
    "the same key with a different body is a 422. 1-255 visible ASCII characters (a UUID is a good choice).",
)


def request_fingerprint(request) -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}\n".encode())
    data = request.data
    canonical = {key: data.getlist(key) for key in sorted(data.keys())} if hasattr(data, "getlist") else data
    digest.update(json.dumps(canonical, sort_keys=True, cls=JSONEncoder, default=str).encode())
    for name in sorted(getattr(request, "FILES", {}) or {}):
        for upload in request.FILES.getlist(name):
            file_digest = hashlib.sha256()
            for chunk in upload.chunks():
                file_digest.update(chunk)
            upload.seek(0)
            digest.update(f"\n{name}:{upload.name}:{file_digest.hexdigest()}".encode())
    return digest.hexdigest()


def _principal_ident(request) -> str:
    principal = principal_of(request)
    if principal is not None:
        return principal.ident
    # Anonymous POSTs (sign-up) are keyed by client address: keys are only meaningful per caller.
    return f"anon:{request.META.get('REMOTE_ADDR', '')}"


def idempotent(handler):
    """Decorate a DRF view's post() so it honours Idempotency-Key (see module docstring)."""

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not KEY_PATTERN.match(key):
            raise ValidationError(
                {HEADER: ["An Idempotency-Key is 1 to 255 visible ASCII characters without spaces."]},
                code="invalid_idempotency_key",
            )
        ident = _principal_ident(request)
        fingerprint = request_fingerprint(request)
        with transaction.atomic():
            IdempotencyRecord.objects.filter(
                principal=ident, key=key, created_at__lt=timezone.now() - LIFETIME
            ).delete()
            try:
                with transaction.atomic():
                    record = IdempotencyRecord.objects.create(
                        principal=ident,
                        key=key,
                        method=request.method,
                        path=request.path[:500],
                        request_hash=fingerprint,
                    )
            except IntegrityError:
                return _replay(ident, key, fingerprint)
            try:
                response = handler(view, request, *args, **kwargs)
            except Exception as exc:  # domain and API errors: answered, not stored (see module docstring)
                response = view.handle_exception(exc)
            if 200 <= response.status_code < 300 and isinstance(response, Response):
                record.response_status = response.status_code
                record.response_body = json.loads(json.dumps(response.data, cls=JSONEncoder))
                record.save(update_fields=["response_status", "response_body"])
            else:
                record.delete()
            return response

    return wrapper


def _replay(ident: str, key: str, fingerprint: str) -> Response:
    existing = IdempotencyRecord.objects.filter(principal=ident, key=key).first()
    if existing is None or existing.response_status is None:
        return error_response(
            409, "idempotency_key_in_use", "A request with this Idempotency-Key is still being processed.", HEADER
        )
    if existing.request_hash != fingerprint:
        return error_response(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
            HEADER,
        )
    response = Response(existing.response_body, status=existing.response_status)
    response["Idempotent-Replayed"] = "true"
    return response
