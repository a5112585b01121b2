"""/favicon.ico: browsers ask for it on every page that links no icon (the admin, the API docs, a PDF tab); without
it each of those page loads logs a failed request. Served from the committed static file, cached for a day."""

from pathlib import Path

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET

FAVICON_PATH = Path(settings.BASE_DIR) / "static" / "portal" / "favicon.ico"


@require_GET
@cache_control(public=True, max_age=86400)
def favicon(request):
    return HttpResponse(FAVICON_PATH.read_bytes(), content_type="image/vnd.microsoft.icon")
