"""Every file the portal and the API hand out goes through here: an attachment, named by Django's own
`content_disposition_header` (quotes and backslashes escaped, non-ASCII as RFC 6266 `filename*=`, so no name can add
a header or a second filename), never sniffed as something else, never cached."""

from django.http import HttpResponse
from django.utils.cache import add_never_cache_headers, patch_cache_control
from django.utils.http import content_disposition_header


def attachment_response(data: bytes, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    add_never_cache_headers(response)
    patch_cache_control(response, private=True)
    return response
