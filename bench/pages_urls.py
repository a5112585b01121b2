"""Continuum's URLs plus `/bench/bare/`: the floor for bench/pages.py.

The bare page is the cheapest signed-in Django page there is on the same settings, middleware and server: the session
and the user are loaded (2 queries) and a small template is rendered. Nothing of Continuum runs in it.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.template import engines
from django.urls import path

from portal.urls import urlpatterns as portal_urlpatterns

_TEMPLATE = engines["django"].from_string(
    "<!doctype html><html><head><title>Bare page</title></head><body>"
    "<h1>Hello {{ user.email }}</h1><ul>{% for n in numbers %}<li>{{ n }}</li>{% endfor %}</ul>"
    "</body></html>"
)


@login_required
def bare(request):
    return HttpResponse(_TEMPLATE.render({"user": request.user, "numbers": range(10)}, request))


urlpatterns = [path("bench/bare/", bare, name="bench_bare"), *portal_urlpatterns]
