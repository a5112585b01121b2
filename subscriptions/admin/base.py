"""What every back-office page of ours builds on: read-only admins and inlines (rows change only through services),
and the site's titles."""

from django.contrib import admin

admin.site.site_header = "Continuum back office"
admin.site.site_title = "Continuum back office"
admin.site.index_title = "Customers, subscriptions and billing"


class NoWrites:
    """Nobody adds, changes or deletes these rows here, superusers included: they change only through services."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(NoWrites, admin.ModelAdmin):
    """View-only for everyone, superusers included: these rows change only through services."""


class ReadOnlyInline(NoWrites, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True
    select_related: tuple[str, ...] = ()  # what each row shows from other tables, fetched with the inline's query

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return queryset.select_related(*self.select_related) if self.select_related else queryset
