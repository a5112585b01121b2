from django.contrib import admin
from django.urls import include, path

from billing.webhooks import stripe_webhook
from portal.views import errors, health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("api/", include("portal.api.urls")),
    path("stripe/webhook/", stripe_webhook, name="stripe_webhook"),
    path("", include("portal.views.urls")),
]

handler404 = errors.page_not_found
handler500 = errors.server_error
