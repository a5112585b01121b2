from django.contrib import admin
from django.urls import include, path

from portal.views import errors, health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("api/", include("portal.api.urls")),
    path("", include("portal.views.urls")),
]

handler404 = errors.page_not_found
handler500 = errors.server_error
