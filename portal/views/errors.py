"""Error pages in the site's style; under /api/ the API's own JSON error format instead."""

from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader

from portal.api.exceptions import error_body, server_error_body


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse(error_body("not_found", "There is no such API endpoint.", None), status=404)
    return render(request, "404.html", status=404)


def server_error(request):
    # An error outside the API views' own handler (a middleware, say): an API client still gets JSON it can parse.
    if _is_api(request):
        return JsonResponse(server_error_body(), status=500)
    # Rendered without context processors that touch the database: the database may be why we are here.
    template = loader.get_template("500.html")
    return HttpResponseServerError(template.render({"request_id": getattr(request, "request_id", "")}))
