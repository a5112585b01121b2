"""What every back-office page of ours builds on: read-only admins and inlines (rows change only through services),
and the site's titles."""

from django.contrib import admin

admin.site.site_header = "Continuum back office"
admin.site.site_title = "Continuum back office"
admin.site.index_title = "Customers, subscriptions and billing"


class ReadOnlyAdmin(admin.ModelAdmin):
    """View-only for everyone, superusers included: these rows change only through services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
