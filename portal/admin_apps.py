"""django.contrib.admin with the back office's site (portal/admin_site.py). Its own module: portal/apps.py must
hold a single AppConfig for Django to pick PortalConfig for "portal"."""

from django.contrib.admin.apps import AdminConfig


class ContinuumAdminConfig(AdminConfig):
    default_site = "portal.admin_site.ContinuumAdminSite"
