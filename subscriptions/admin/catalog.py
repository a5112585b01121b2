"""The catalog (SKUs, packages, components, prices): superusers edit it, everyone else reads; a save that would
leave the catalog invalid (`catalog_validate`) is refused as a whole."""

from django import forms
from django.contrib import admin
from django.db import transaction

from subscriptions.models import Package, PackageComponent, Price, Sku
from subscriptions.services.catalog import catalog_validate


class SuperuserEditsMixin:
    """The catalog is changed by superusers only; support and billing staff read it."""

    def has_add_permission(self, request, *args) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser


class _CatalogRefused(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class CatalogValidatedMixin:
    """Validate the catalog after the row and its inlines are saved; refuse the whole save with specific messages.

    The save runs in a savepoint; when catalog_validate finds problems the savepoint rolls back (nothing was saved,
    no "changed" log entry, no success message) and the form is shown again, bound to what was typed, with the
    problems as its errors.
    """

    def catalog_problems(self, obj) -> list[str]:
        raise NotImplementedError

    def _changeform_view(self, request, object_id, form_url, extra_context):
        if request.method != "POST" or getattr(request, "_catalog_problems", None):
            return super()._changeform_view(request, object_id, form_url, extra_context)
        try:
            with transaction.atomic():
                return super()._changeform_view(request, object_id, form_url, extra_context)
        except _CatalogRefused as refused:
            request._catalog_problems = refused.problems
            return super()._changeform_view(request, object_id, form_url, extra_context)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        problems = self.catalog_problems(form.instance)
        if problems:
            raise _CatalogRefused(problems)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        problems = getattr(request, "_catalog_problems", None)
        if not problems:
            return form_class

        class RefusedForm(form_class):
            def clean(self):
                super().clean()
                raise forms.ValidationError(["The catalog would be invalid, so nothing was saved:", *problems])

        return RefusedForm


@admin.register(Sku)
class SkuAdmin(CatalogValidatedMixin, SuperuserEditsMixin, admin.ModelAdmin):
    list_display = [
        "code",
        "name",
        "kind",
        "tax_category",
        "feature_key",
        "feature_label",
        "feature_value_kind",
        "feature_value",
    ]
    list_filter = ["kind", "tax_category", "is_active"]
    search_fields = ["code", "name", "feature_key", "feature_label"]

    def catalog_problems(self, obj) -> list[str]:
        # A SKU change (e.g. deactivating it) can break every package that contains it.
        problems: list[str] = []
        for package in Package.objects.filter(components__sku=obj).distinct():
            problems += catalog_validate(package)
        return problems


class PackageComponentInline(SuperuserEditsMixin, admin.TabularInline):
    model = PackageComponent
    extra = 0
    autocomplete_fields = ["sku"]


class PriceInline(SuperuserEditsMixin, admin.TabularInline):
    """Prices are grandfathered: an existing row's amounts never change (add a new row, deactivate the old)."""

    model = Price
    extra = 0
    fields = ["currency", "interval", "flat_amount_minor", "seat_amount_minor", "setup_amount_minor", "is_active"]

    def get_readonly_fields(self, request, obj=None):
        return ["currency", "interval", "flat_amount_minor", "seat_amount_minor", "setup_amount_minor"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class NewPriceInline(SuperuserEditsMixin, admin.TabularInline):
    """New price rows; existing ones are listed (read-only amounts) in PriceInline."""

    model = Price
    extra = 0
    verbose_name = "new price"
    verbose_name_plural = "add prices (a price change is a new row; deactivate the old one)"
    fields = ["currency", "interval", "flat_amount_minor", "seat_amount_minor", "setup_amount_minor", "is_active"]

    def get_queryset(self, request):
        return super().get_queryset(request).none()

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Package)
class PackageAdmin(CatalogValidatedMixin, SuperuserEditsMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "is_addon", "is_public", "is_active", "included_seats", "min_seats", "max_seats"]
    list_filter = ["is_addon", "is_public", "is_active"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["addon_for", "change_targets"]
    inlines = [PackageComponentInline, PriceInline, NewPriceInline]

    def catalog_problems(self, obj) -> list[str]:
        return catalog_validate(obj)
