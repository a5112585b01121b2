"""The back office's customer health and revenue metrics pages (issue 20), served by the admin site
(portal/admin_site.py adds their URLs under /admin/reports/, wrapped in admin_view: staff only, two-factor verified).

Thin callers: the figures come from portal.backoffice_health / portal.backoffice_metrics (reads) and the weights
from billing.services.health (preview, then save — audited there). Who may see and do what is the policy table
(subscriptions/policy.py: `health.view`, `health.weights`, `metrics.view`); a crafted POST without the permission is
a 403.
"""

import csv
from datetime import date

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from billing.exceptions import HealthWeightsInvalid
from billing.health import formulas
from billing.services.health import health_weights_current, health_weights_preview, health_weights_save
from portal import charts
from portal.backoffice_health import COMPONENT_LABELS, STAGE_LABELS, customer_links, health_overview, health_rows
from portal.backoffice_metrics import metrics_page_data, reconciliation_rows
from subscriptions import clock, policy
from subscriptions.money import minor_to_major
from subscriptions.policy import Action


def _require(request, action: Action) -> None:
    if not policy.staff_allows(request.user, action, in_admin=True):
        raise PermissionDenied


def _context(request, site, title: str, **extra) -> dict:
    return {**site.each_context(request), "title": title, **extra}


class HealthWeightsForm(forms.Form):
    """The six component weights (0–100 each, not all zero) and the at-risk threshold (a score 0–100)."""

    seat_adoption = forms.IntegerField(min_value=0, max_value=100, label=COMPONENT_LABELS["seat_adoption"])
    activity = forms.IntegerField(min_value=0, max_value=100, label=COMPONENT_LABELS["activity"])
    payment = forms.IntegerField(min_value=0, max_value=100, label=COMPONENT_LABELS["payment"])
    enablement = forms.IntegerField(min_value=0, max_value=100, label=COMPONENT_LABELS["enablement"])
    friction = forms.IntegerField(min_value=0, max_value=100, label=COMPONENT_LABELS["friction"])
    effort = forms.IntegerField(min_value=0, max_value=100, label=COMPONENT_LABELS["effort"])
    at_risk_below = forms.IntegerField(
        min_value=0, max_value=100, label="At risk below", help_text="A score under this puts a customer at risk."
    )

    def clean(self):
        data = super().clean()
        weights = self.weights()
        if len(weights) == len(formulas.COMPONENTS):
            for problem in formulas.weights_problems(weights):
                self.add_error(None, problem)
        return data

    def weights(self) -> dict[str, int]:
        return {name: self.cleaned_data[name] for name in formulas.COMPONENTS if name in self.cleaned_data}


def health_view(request, site):
    _require(request, Action.HEALTH_VIEW)
    can_save = policy.staff_allows(request.user, Action.HEALTH_WEIGHTS, in_admin=True)
    preview = None
    if request.method == "POST":
        intent = "save" if "save" in request.POST else "preview"
        if intent == "save" and not can_save:
            raise PermissionDenied
        form = HealthWeightsForm(request.POST)
        if form.is_valid():
            weights, threshold = form.weights(), form.cleaned_data["at_risk_below"]
            try:
                if intent == "save":
                    health_weights_save(weights=weights, at_risk_below=threshold, actor=request.user)
                else:
                    preview = health_weights_preview(weights=weights, at_risk_below=threshold)
            except HealthWeightsInvalid as error:
                form.add_error(None, error.message)
            else:
                if intent == "save":
                    messages.success(
                        request, "Weights saved. They apply from the next health computation (nightly, or on events)."
                    )
                    return HttpResponseRedirect(reverse("admin:staff_health"))
    else:
        form = HealthWeightsForm(initial=health_weights_current())
    overview = health_overview()
    if preview is not None:
        names = customer_links([*preview["joining"], *preview["leaving"]])
        preview = {
            "joining": [names[cid] for cid in preview["joining"] if cid in names],
            "leaving": [names[cid] for cid in preview["leaving"] if cid in names],
            "at_risk_count": len(preview["at_risk"]),
        }
    distribution = charts.histogram(
        title="Health score distribution",
        counts=overview.score_bands,
        description="How many customers have a health score in each band of ten points.",
    )
    return TemplateResponse(
        request,
        "admin/staff_health.html",
        _context(
            request,
            site,
            "Customer health",
            overview=overview,
            distribution=distribution,
            form=form,
            preview=preview,
            can_save=can_save,
            stage_labels=STAGE_LABELS,
        ),
        status=400 if request.method == "POST" and form.errors else 200,
    )


CSV_HEADERS = ["customer_id", "customer", "score", "stage", "mrr", "currency", "renewal_date", "explanation"]
DANGEROUS_FIRST = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value) -> str:
    """A cell a spreadsheet will not run as a formula: text starting with = + - @ (or a tab/CR) gets a leading '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(DANGEROUS_FIRST) else text


class _Echo:
    def write(self, value: str) -> str:
        return value


def health_csv_view(request, site):
    _require(request, Action.HEALTH_VIEW)
    today = clock.today()

    def lines():
        writer = csv.writer(_Echo())
        yield writer.writerow(CSV_HEADERS)
        for row in health_rows(on=today, with_unscored=True):
            yield writer.writerow(
                [
                    row.customer_id,
                    csv_safe(row.name),
                    "" if row.score is None else row.score,
                    csv_safe(row.stage_label if row.stage else ""),
                    minor_to_major(row.mrr_minor, row.currency),
                    csv_safe(row.currency),
                    row.renews_on.isoformat() if row.renews_on else "",
                    csv_safe(row.explanation),
                ]
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="customer-health-{today.isoformat()}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _month(value: str | None) -> date | None:
    """'2026-11' → 2026-11-01; None for anything else."""
    try:
        year, month = (int(part) for part in (value or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        return None


def metrics_view(request, site):
    _require(request, Action.METRICS_VIEW)
    month = request.GET.get("month")
    end_month = _month(month) if month else None
    if month and end_month is None:
        data, status = metrics_page_data(currency=request.GET.get("currency")), 400
        data.problems.append("Give the month as YYYY-MM.")
    else:
        data = metrics_page_data(end_month=end_month, currency=request.GET.get("currency"))
        status = 400 if data.problems else 200
    return TemplateResponse(
        request, "admin/staff_metrics.html", _context(request, site, "Revenue metrics", m=data), status=status
    )


def reconciliation_view(request, site):
    _require(request, Action.METRICS_VIEW)
    month = _month(request.GET.get("month")) if request.GET.get("month") else clock.today().replace(day=1)
    if month is None:
        return TemplateResponse(
            request,
            "admin/staff_reconciliation.html",
            _context(request, site, "MRR reconciliation", problem="Give the month as YYYY-MM.", rows=[]),
            status=400,
        )
    rows = reconciliation_rows(month=month)
    return TemplateResponse(
        request,
        "admin/staff_reconciliation.html",
        _context(request, site, f"MRR reconciliation, {month:%Y-%m}", rows=rows, month=month),
    )
