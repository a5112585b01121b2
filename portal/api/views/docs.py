"""Interactive API docs, served entirely from our own static files (no CDN).

Swagger UI's bundle is self-hosted via drf-spectacular-sidecar and its init script is a separate same-origin file
(the "split" view), so script-src stays 'self'. Swagger UI writes inline style attributes, so this one page allows
inline styles; nothing else about the site's Content-Security-Policy changes.
"""

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

DOCS_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self' data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


class ApiDocsView(SpectacularSwaggerSplitView):
    url_name = "api:schema"
    permission_classes: list = []
    authentication_classes: list = []

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = DOCS_CSP
        return response


class ApiSchemaView(SpectacularAPIView):
    permission_classes: list = []
    authentication_classes: list = []
