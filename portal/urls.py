from django.contrib import admin
from django.urls import include, path

from billing.webhooks import stripe_webhook
from portal import metrics
from portal.views import errors, favicon, health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", favicon.favicon, name="favicon"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("api/", include("portal.api.urls")),
    path("stripe/webhook/", stripe_webhook, name="stripe_webhook"),
    path("", include("portal.views.urls")),
]

handler404 = errors.page_not_found
handler500 = errors.server_error
