from django.contrib import admin
from django.urls import include, path

from billing.webhooks import stripe_webhook
from portal.views import errors

urlpatterns = [
    path("admin/", admin.site.urls),
    path("stripe/webhook/", stripe_webhook, name="stripe_webhook"),
    path("", include("portal.views.urls")),
]

handler404 = errors.page_not_found
handler500 = errors.server_error
