"""Preview → confirm for every self-service change (seats, package/interval, add-ons, cancel, undo cancel).

One flow for all of them:
1. the page's form posts to `change_preview_<kind>` (htmx swaps the preview in; without JavaScript the whole page
   re-renders) and we show every line, the amount due now, the new recurring amount and when it takes effect;
2. the preview carries the subscription `version`, the amount due now and a fresh idempotency key in hidden fields;
3. `change_apply_<kind>` applies exactly that. If anything changed in between, the service refuses (`StalePreview`)
   and we show the *new* preview with an explanation — never silently apply different numbers. A double-submit
   reuses the idempotency key, so it cannot apply twice.

The portal calls billing's wrappers (`billing.services.changes.change_preview/change_apply`, which add tax and the
billing mode). A preview loads the subscription once, scoped to the customer, with everything the preview reads
(`subscriptions_for_billed_change`), and hands it down: a preview page stays within the 10-query page budget.
"""

import uuid
from dataclasses import dataclass

from django.contrib import messages
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from billing.exceptions import BillingError
from billing.services import changes as billing_changes
from billing.services.discounts import interleave
from portal.inputs import id_from_request
from portal.page_cache import page_cache_on, page_data
from portal.permissions import PACKAGE, SEATS, customer_view, get_for_customer
from portal.prebuilt import prebuilt
from portal.throttle import client_ip
from subscriptions.exceptions import StalePreview, SubscriptionError
from subscriptions.inputs import MAX_AMOUNT, MAX_SEATS, MAX_VERSION, parse_int
from subscriptions.models import LIVE_STATUSES, Interval, Subscription
from subscriptions.services.changes.kinds import CHANGE_KINDS

# Errors whose message a customer can read.
USER_ERRORS = (SubscriptionError, BillingError)


@dataclass(frozen=True)
class ChangeKind:
    name: str
    capability: str
    params: tuple[str, ...]
    title: str
    confirm_label: str
    back: str  # url name of the page the change starts from


KINDS = {
    k.name: k
    for k in [
        ChangeKind(
            "seats",
            SEATS,
            ("seats", "promotion_code"),
            "Change seats",
            "Confirm seats",
            "seats",
        ),
        ChangeKind(
            "package",
            PACKAGE,
            ("package_slug", "interval", "promotion_code"),
            "Change package",
            "Confirm the change",
            "package",
        ),
        ChangeKind(
            "addon_add",
            PACKAGE,
            ("addon_slug", "promotion_code"),
            "Add an add-on",
            "Add it",
            "package",
        ),
        ChangeKind(
            "addon_remove",
            PACKAGE,
            ("addon_slug",),
            "Remove an add-on",
            "Remove it",
            "package",
        ),
        ChangeKind("cancel", PACKAGE, ("reason",), "Cancel at period end", "Cancel", "package"),
        ChangeKind("reactivate", PACKAGE, (), "Keep the subscription", "Keep it", "package"),
    ]
}
# The page's labels for each kind of the one registry (subscriptions/services/changes/kinds.py); no kind of its own.
if KINDS.keys() != CHANGE_KINDS.keys():
    raise RuntimeError("portal change pages are out of step with the change-kind registry")


@dataclass(frozen=True)
class PreviewView:
    """What the preview template shows, whether billing's wrapper (tax, billing mode) is there or not."""

    lines: tuple
    currency: str
    summary: str
    version: int
    amount_due_now_minor: int  # before tax; what the apply compares against
    effective_at: object
    immediate: bool
    next_recurring_amount_minor: int
    current_recurring_amount_minor: int
    notes: tuple
    tax_minor: int | None = None
    total_minor: int | None = None
    tax_lines: tuple = ()
    next_recurring_total_minor: int | None = None
    billing_message: str = ""
    tax_note: str = ""
    recurring_interval: str = ""  # "month" | "year": the period the new recurring amount is for
    current_interval: str = ""
    # Discounts: the lines after each discounted line, their sum, and what/until when.
    discount_lines: tuple = ()
    discount_minor: int = 0
    discount_description: str = ""
    discount_ends_at: object = None
    next_recurring_discount_minor: int = 0
    promotion_code: str = ""

    @property
    def subtotal_minor(self) -> int:
        """Due now before tax, after discounts (what the customer is shown; the apply compares the amount before)."""
        return self.amount_due_now_minor + self.discount_minor

    @property
    def next_recurring_discounted_minor(self) -> int:
        return self.next_recurring_amount_minor + self.next_recurring_discount_minor

    @property
    def rows(self) -> list:
        """[(line, None) | (None, discount line)]: each discount line right after the line it discounts."""
        return interleave(list(self.lines), list(self.discount_lines))

    @property
    def recurring_period(self) -> str:
        return "year" if self.recurring_interval == Interval.YEAR else "month"

    @property
    def current_period(self) -> str:
        return "year" if self.current_interval == Interval.YEAR else "month"

    @classmethod
    def of(cls, result) -> "PreviewView":
        inner = getattr(result, "preview", result)
        billed = inner is not result
        return cls(
            lines=tuple(inner.lines),
            currency=inner.currency,
            summary=inner.summary,
            version=inner.version,
            amount_due_now_minor=inner.amount_due_now_minor,
            effective_at=inner.effective_at,
            immediate=inner.immediate,
            next_recurring_amount_minor=inner.next_recurring_amount_minor,
            current_recurring_amount_minor=getattr(inner, "current_recurring_amount_minor", 0),
            notes=tuple(getattr(inner, "notes", ()) or ()),
            tax_minor=result.tax_minor if billed else None,
            total_minor=result.total_minor if billed else None,
            tax_lines=tuple(getattr(result, "tax_lines", ()) or ()),
            next_recurring_total_minor=getattr(result, "next_recurring_total_minor", None) if billed else None,
            billing_message=getattr(result, "billing_message", "") if billed else "",
            tax_note=getattr(result, "tax_note", "") if billed else "",
            recurring_interval=inner.recurring_interval,
            current_interval=inner.current_interval,
            discount_lines=tuple(getattr(result, "discount_lines", ()) or ()),
            discount_minor=getattr(result, "discount_minor", 0) if billed else 0,
            discount_description=getattr(result, "discount_description", "") if billed else "",
            discount_ends_at=getattr(result, "discount_ends_at", None) if billed else None,
            next_recurring_discount_minor=getattr(result, "next_recurring_discount_minor", 0) if billed else 0,
            promotion_code=getattr(result, "promotion_code", "") if billed else "",
        )


def change_preview(kind: str, *, subscription: Subscription, **params) -> PreviewView:
    """Billing's preview (tax + billing mode) of the subscription loaded by `_subscription`."""
    return PreviewView.of(
        billing_changes.change_preview(subscription_id=subscription.pk, subscription=subscription, kind=kind, **params)
    )


def change_apply(kind: str, **kwargs):
    """Apply and bill the change; returns the `SubscriptionChange`."""
    return billing_changes.change_apply(kind=kind, **kwargs).change


class FormError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _parse(kind: ChangeKind, data) -> dict:
    values = {}
    for param in kind.params:
        raw = (data.get(param) or "").strip()
        if param == "seats":
            seats = parse_int(raw, minimum=-MAX_SEATS, maximum=MAX_SEATS)
            if seats is None:
                raise FormError("seats", "Enter the number of seats as a whole number, e.g. 12.")
            values["seats"] = seats
        elif param == "interval":
            if raw and raw not in Interval.values:
                raise FormError("interval", "Choose monthly or annual billing.")
            values["interval"] = raw or None
        elif param == "promotion_code":
            if len(raw) > 40:
                raise FormError("promotion_code", "That promotion code is too long; check it and try again.")
            values["promotion_code"] = raw or None
        elif param == "reason":
            if not raw:
                raise FormError("reason", "Please tell us why you are canceling; it helps us improve.")
            if len(raw) > 1000:
                raise FormError("reason", "Please keep the reason under 1,000 characters.")
            values["reason"] = raw
        else:
            if not raw:
                raise FormError(param, "Choose one of the options.")
            values[param] = raw
    return values


@prebuilt
def _live_for_preview(lean: bool):
    # Built once per process (portal/prebuilt.py): building this shape's annotations and prefetches cost ~9 ms of
    # CPU per preview, i.e. per keystroke of the seat field. `lean` (the live seat preview, sent on every
    # keystroke): no SKU subqueries to compile; the preview takes the SKUs from billing's per-package cache. Only
    # there: a cold cache (the first preview after a catalog edit) costs one query, which the other previews'
    # 10-query budget has no room for.
    return billing_changes.subscriptions_for_billed_change(skus=not lean).filter(status__in=LIVE_STATUSES)


def _subscription(request, *, for_preview: bool, lean: bool = False) -> Subscription:
    """The live subscription the form names (404 for another customer's), loaded for a preview with everything it
    reads; for a confirm only its id matters (the service loads and locks it).

    The live seat preview (`lean`, one request per keystroke) takes the loaded subscription — its add-ons, seats
    assigned, billing profile, discount and exemption flags — from the page cache under the customer's data version
    (portal/page_cache.py): the price itself is computed per request from it, for whatever seat count was typed."""
    raw = request.POST.get("subscription_id") or request.GET.get("subscription_id") or ""
    if lean and for_preview and page_cache_on():
        return page_data(
            request,
            "seat_preview_inputs",
            lambda: billing_changes.change_preview_inputs_load(_load(request, raw, _live_for_preview(True))),
            parts=(raw,),
        )
    qs = _live_for_preview(lean) if for_preview else Subscription.objects.only("pk").filter(status__in=LIVE_STATUSES)
    return _load(request, raw, qs)


def _load(request, raw: str, qs) -> Subscription:
    pk = id_from_request(raw)
    if pk is not None:
        return get_for_customer(qs, request.customer, pk=pk)
    # One live subscription is the normal case; pick it when the form does not say.
    subscription = qs.filter(customer=request.customer).order_by("created_at").first()
    if subscription is None:
        raise Http404("No live subscription.")
    return subscription


def _code_params(request, values: dict) -> dict:
    """A promotion code's invalid attempts are throttled per customer and per client address."""
    if not values.get("promotion_code"):
        return {k: v for k, v in values.items() if k != "promotion_code"}
    return {**values, "customer_key": str(request.customer.pk), "ip": client_ip(request)}


def preview_for(kind: ChangeKind, subscription: Subscription, values: dict, request=None) -> PreviewView:
    params = _code_params(request, values) if request is not None else values
    return change_preview(kind.name, subscription=subscription, **params)


def _preview_context(request, kind, subscription, values, preview=None, error=None, stale=None):
    return {
        "customer": request.customer,
        "kind": kind,
        "subscription": subscription,
        "values": values,
        "preview": preview,
        "error": error,
        "stale": stale,
        "idempotency_key": uuid.uuid4().hex,
        "apply_url": reverse(f"portal:change_apply_{kind.name}", args=[request.customer.pk]),
        "back_url": reverse(f"portal:{kind.back}", args=[request.customer.pk]),
    }


def _render_preview(request, context, status=200):
    template = "portal/changes/_preview.html" if request.htmx else "portal/changes/preview_page.html"
    return render(request, template, context, status=status)


def _make_preview_view(kind: ChangeKind):
    @customer_view(kind.capability)
    def preview_view(request):
        subscription = _subscription(request, for_preview=True, lean=kind.name == "seats")
        data = request.POST if request.method == "POST" else request.GET
        try:
            values = _parse(kind, data)
            preview = preview_for(kind, subscription, values, request)
        except FormError as e:
            return _render_preview(request, _preview_context(request, kind, subscription, {}, error=e), status=422)
        except USER_ERRORS as e:
            context = _preview_context(request, kind, subscription, dict(data.items()), error=e)
            return _render_preview(request, context, status=422)
        return _render_preview(request, _preview_context(request, kind, subscription, values, preview))

    preview_view.__name__ = f"change_preview_{kind.name}"
    return preview_view


def _make_apply_view(kind: ChangeKind):
    @customer_view(kind.capability)
    def apply_view(request):
        if request.method != "POST":
            return HttpResponseRedirect(reverse(f"portal:{kind.back}", args=[request.customer.pk]))
        subscription = _subscription(request, for_preview=False)
        try:
            values = _parse(kind, request.POST)
        except FormError:
            values = None
        version = parse_int(request.POST.get("version", ""), minimum=1, maximum=MAX_VERSION)
        amount = parse_int(request.POST.get("amount_due_now_minor", ""), minimum=-MAX_AMOUNT, maximum=MAX_AMOUNT)
        if values is None or version is None or amount is None:
            messages.error(request, "That confirmation was incomplete. Please preview the change again.")
            return HttpResponseRedirect(reverse(f"portal:{kind.back}", args=[request.customer.pk]))
        idempotency_key = (request.POST.get("idempotency_key") or "")[:100] or None
        try:
            change = change_apply(
                kind.name,
                subscription_id=subscription.pk,
                expected_version=version,
                expected_amount_due_minor=amount,
                idempotency_key=idempotency_key,
                actor=request.user,
                **_code_params(request, values),
            )
        except StalePreview as stale:
            # Explain, and show the current numbers for a fresh decision.
            subscription = _subscription(request, for_preview=True)
            try:
                preview = preview_for(kind, subscription, values, request)
                context = _preview_context(request, kind, subscription, values, preview, stale=stale)
            except USER_ERRORS as e:
                context = _preview_context(request, kind, subscription, values, error=e, stale=stale)
            return _render_preview(request, context, status=409)
        except USER_ERRORS as e:
            context = _preview_context(request, kind, subscription, values, error=e)
            return _render_preview(request, context, status=422)
        summary = _summary(change)
        messages.success(request, summary or "Done.")
        target = _after_change_url(request, change)
        if request.htmx:
            response = HttpResponse(status=204)
            response["HX-Redirect"] = target
            return response
        return HttpResponseRedirect(target)

    apply_view.__name__ = f"change_apply_{kind.name}"
    return apply_view


def _after_change_url(request, change) -> str:
    """The one-question effort survey when it exists, else the dashboard."""
    try:
        return reverse("portal:survey", args=[request.customer.pk]) + f"?change={change.pk}"
    except NoReverseMatch:
        return reverse("portal:customer_dashboard", args=[request.customer.pk])


def _summary(change) -> str:
    result = getattr(change, "result", None) or {}
    return result.get("summary", "") if isinstance(result, dict) else ""


PREVIEW_VIEWS = {name: _make_preview_view(kind) for name, kind in KINDS.items()}
APPLY_VIEWS = {name: _make_apply_view(kind) for name, kind in KINDS.items()}
