"""Template helpers of the customer portal."""

from functools import lru_cache

from django import template
from django.utils.safestring import mark_safe

from portal.page_cache import fragment_html
from subscriptions import money as formats

register = template.Library()

# Babel formatting is pure (the value and the locale decide the text) and costs 20–70 µs a call: a page of 50
# activity rows spent ~3 ms in `format_moment` alone. Memoised per process, bounded (issue 18).
format_money = lru_cache(maxsize=8192)(formats.format_money)
format_date = lru_cache(maxsize=8192)(formats.format_date)
format_moment = lru_cache(maxsize=8192)(formats.format_moment)


@register.simple_tag(takes_context=True)
def money(context, amount_minor, currency=None, country=None):
    """`{% money invoice.total_minor invoice.currency %}`, in the locale of the page's customer (its country)."""
    customer = context.get("customer")
    if currency is None:
        currency = getattr(customer, "currency", "USD")
    if country is None:
        country = getattr(customer, "country", "") or "US"
    return format_money(amount_minor, currency, country)


@register.simple_tag(takes_context=True)
def day(context, value, empty="", country=None):
    """`{% day invoice.due_on empty="—" %}`: a date (a datetime gives its UTC day) as the locale of the page's customer
    writes it ("Mar 31, 2026" in the US, "31 Mar 2026" in Germany), like `{% money %}`; `empty` when there is none."""
    if not value:
        return empty
    if country is None:
        country = getattr(context.get("customer"), "country", "") or "US"
    return format_date(value, country)


@register.simple_tag(takes_context=True)
def moment(context, value, empty="", country=None):
    """`{% moment event.occurred_at %}`: a day and time (UTC) in the locale of the page's customer, like `{% day %}`."""
    if not value:
        return empty
    if country is None:
        country = getattr(context.get("customer"), "country", "") or "US"
    return format_moment(value, country)


@register.filter(name="money")
def money_filter(amount_minor, currency="USD"):
    """`{{ amount|money:"EUR" }}` in the default (en-US) locale, for pages without a customer."""
    return format_money(amount_minor, currency, "US")


@register.filter
def percent_of(part, whole):
    """An integer 0-100 for CSS bar classes; 0 when the whole is 0."""
    try:
        return max(0, min(100, round(100 * int(part) / int(whole)))) if int(whole) else 0
    except (TypeError, ValueError):
        return 0


@register.simple_tag
def optional_url(name, *args):
    """The URL of a page another part of the portal may not have built yet; "" until it exists."""
    from django.urls import NoReverseMatch, reverse

    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


@register.simple_tag(takes_context=True)
def switch_url(context, customer_id):
    """The same page for another customer (the switcher), falling back to that customer's dashboard."""
    from django.urls import NoReverseMatch, reverse

    request = context["request"]
    match = getattr(request, "resolver_match", None)
    if match and "customer_id" in match.kwargs and match.url_name not in {"enablement"}:
        kwargs = {**match.kwargs, "customer_id": customer_id}
        if set(kwargs) == {"customer_id"}:
            try:
                return reverse(match.view_name, kwargs=kwargs)
            except NoReverseMatch:
                pass
    return reverse("portal:customer_dashboard", args=[customer_id])


@register.filter
def absolute(value):
    try:
        return abs(int(value))
    except (TypeError, ValueError):
        return value


@register.filter
def add_current(alternatives, current):
    """The current package's offer first, then the alternatives (for side-by-side comparison)."""
    return ([current] if current else []) + list(alternatives)


class PageFragmentNode(template.Node):
    def __init__(self, nodelist, name: str):
        self.nodelist = nodelist
        self.name = name

    def render(self, context):
        request = context.get("request")
        if request is None:
            return self.nodelist.render(context)

        def render(token):
            with context.push(csrf_token=token):
                return self.nodelist.render(context)

        return mark_safe(fragment_html(request, self.name, context.get("csrf_token"), render))  # noqa: S308 — rendered by this nodelist


@register.tag
def page_fragment(parser, token):
    """`{% page_fragment %}…{% endpage_fragment %}` around a cached page's content: on a GET whose data came from
    the page cache, the HTML rendered from that data is kept with it (portal/page_cache.py); everything in it must
    come from the page's cached data, its key (user, role, language, date, the page's arguments) or the CSRF token."""
    nodelist = parser.parse(("endpage_fragment",))
    parser.delete_first_token()
    return PageFragmentNode(nodelist, name=f"{parser.origin.template_name}:{token.lineno}")
