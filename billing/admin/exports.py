"""Accounting exports in the back office: billing staff (permission `billing.run_accountingexport`) ask for a range,
watch its progress and download the file."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from billing.admin.base import OwnPages
from billing.exceptions import BillingError
from billing.models import AccountingExport, ExportFormat, ExportStatus
from billing.services.exports import accounting_export_downloaded, accounting_export_request
from subscriptions import policy

PERMISSION = policy.rule_for(policy.Action.EXPORTS_RUN).staff_permission


def _allowed(request) -> bool:
    return policy.staff_allows(request.user, policy.Action.EXPORTS_RUN, in_admin=True)


class ExportForm(forms.Form):
    start = forms.DateField(help_text="First day (UTC).", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(
        help_text="The day after the last day: a month is 1 Nov – 1 Dec.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    format = forms.ChoiceField(choices=ExportFormat.choices, initial=ExportFormat.XLSX)


@admin.register(AccountingExport)
class AccountingExportAdmin(OwnPages, admin.ModelAdmin):
    list_display = ("__str__", "status", "progress_bar", "rows", "requested_by", "created_at", "download")
    list_filter = ("status", "format")
    readonly_fields = [f.name for f in AccountingExport._meta.fields if f.name != "file"] + ["download"]
    exclude = ("file",)

    def has_module_permission(self, request) -> bool:
        return _allowed(request)

    def has_view_permission(self, request, obj=None) -> bool:
        return _allowed(request)

    def has_add_permission(self, request) -> bool:
        return _allowed(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    own_pages = (("<int:export_id>/download/", "download_view", "billing_accountingexport_download"),)

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                export = accounting_export_request(actor=request.user, **form.cleaned_data)
            except BillingError as error:
                form.add_error(getattr(error, "field", None) or None, error.message)
            else:
                messages.success(request, f"{export} is being built; this page shows its progress.")
                return HttpResponseRedirect(reverse("admin:billing_accountingexport_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "New accounting export",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/billing/accounting_export_form.html", context)

    def changelist_view(self, request, extra_context=None):
        running = AccountingExport.objects.filter(status__in=[ExportStatus.QUEUED, ExportStatus.RUNNING]).exists()
        return super().changelist_view(request, {**(extra_context or {}), "refresh": running})

    def download_view(self, request, export_id: int):
        if not _allowed(request):
            raise PermissionDenied
        export = get_object_or_404(AccountingExport, pk=export_id, status=ExportStatus.DONE)
        accounting_export_downloaded(export=export, actor=request.user)
        name = export.file.name.rsplit("/", 1)[-1]
        return FileResponse(export.file.open("rb"), as_attachment=True, filename=name)

    @admin.display(description="Progress")
    def progress_bar(self, export) -> str:
        if export.status == ExportStatus.FAILED:
            return format_html("<span title='{}'>failed</span>", export.error)
        return format_html("<progress max='100' value='{}'></progress> {}%", export.progress, export.progress)

    @admin.display(description="File")
    def download(self, export) -> str:
        if export.status != ExportStatus.DONE:
            return "—"
        url = reverse("admin:billing_accountingexport_download", args=[export.pk])
        return format_html("<a href='{}'>Download</a>", url)
