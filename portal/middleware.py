"""Request-scoped middleware: a request id for logs and responses, no-store for private answers, and the CSP."""

import re
import time
import uuid
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth import logout
from django.http import JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control

from portal.admin_site import staff_is_verified
from portal.logging import customer_id_from, customer_id_var, request_id_var
from portal.services.staff_signin import LAST_SEEN_AT, staff_session_expired

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Tags every log line of a request with an id; honours a sane incoming X-Request-ID from a proxy."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        customer_token = customer_id_var.set(None)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
            customer_id_var.reset(customer_token)
        response["X-Request-ID"] = request_id
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # The customer the request is about, for its log lines (whether the caller may act for it is the view's call).
        customer_id_var.set(customer_id_from(view_kwargs))


class ContentSecurityPolicyMiddleware:
    """Only our own scripts and styles (htmx is served locally); Stripe.js only from its configured origin."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "Content-Security-Policy" not in response:
            script_src = ["'self'"]
            frame_src = ["'self'"]
            connect_src = ["'self'"]
            stripe_js = getattr(settings, "STRIPE_JS_URL", "")
            if settings.STRIPE_SECRET_KEY and stripe_js:
                origin = "/".join(stripe_js.split("/")[:3])
                script_src.append(origin)
                frame_src.append(origin)
                connect_src.append(origin)
                if settings.STRIPE_API_BASE:
                    connect_src.append(settings.STRIPE_API_BASE.rstrip("/"))
            response["Content-Security-Policy"] = "; ".join(
                [
                    "default-src 'self'",
                    f"script-src {' '.join(script_src)}",
                    # The admin's own templates carry inline style attributes; the portal does not.
                    "style-src 'self' 'unsafe-inline'" if request.path.startswith("/admin/") else "style-src 'self'",
                    "img-src 'self' data:",
                    f"connect-src {' '.join(connect_src)}",
                    f"frame-src {' '.join(frame_src)}",
                    "object-src 'none'",
                    "base-uri 'self'",
                    "form-action 'self'",
                    "frame-ancestors 'none'",
                ]
            )
        return response


class NoStoreMiddleware:
    """Nothing shown to a signed-in person or to an API credential may be kept by a browser or a shared cache.

    Marks `Cache-Control: no-store` (with Django's never-cache headers) on every response to an authenticated request
    (a session, or an `Authorization` header — DRF sets `request.user` on the underlying request once it has
    authenticated a bearer token), on every file download, and wherever a view asked for it. Public pages for
    anonymous visitors (pricing, the catalog API) stay cacheable.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (
            (user is not None and user.is_authenticated)
            or "HTTP_AUTHORIZATION" in request.META
            or response.has_header("Content-Disposition")
        ):
            add_never_cache_headers(response)
            patch_cache_control(response, private=True)
        return response


class StaffSessionMiddleware:
    """Staff sessions end after STAFF_SESSION_IDLE_SECONDS idle or STAFF_SESSION_MAX_SECONDS in all (audited), and,
    where two-factor sign-in is required, a staff session without a verified second factor reaches nothing but the
    back-office sign-in page (the admin site itself also refuses it: portal/admin_site.py)."""

    # The last-seen mark is written at most this often, so a staff page view is not a session write every time.
    TOUCH_EVERY_SECONDS = 60

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.is_staff:
            response = self._staff(request, user)
            if response is not None:
                return response
        return self.get_response(request)

    def _staff(self, request, user):
        now = time.time()
        reason = staff_session_expired(session=request.session, now=now)
        if reason:
            request.staff_session_end_reason = reason
            logout(request)  # audited as staff.session_expired; the request goes on as anonymous
            return None
        if now - request.session.get(LAST_SEEN_AT, now) >= self.TOUCH_EVERY_SECONDS:
            request.session[LAST_SEEN_AT] = now
        if staff_is_verified(request):
            return None
        login_url = reverse("admin:login")
        if request.path.startswith(("/admin/", "/static/")) or request.path in ("/healthz", "/favicon.ico"):
            return None  # the admin site answers unverified sessions with its own two-factor sign-in page
        if request.path.startswith("/api/"):
            return JsonResponse(
                {
                    "error": {
                        "code": "staff_two_factor_required",
                        "message": "Staff must sign in to the back office with two-factor authentication first.",
                        "field": None,
                    }
                },
                status=403,
            )
        return redirect(f"{login_url}?next={quote(request.path)}")
