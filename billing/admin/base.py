"""What billing's back-office modules share: the read-only admin and inline, staff-facing money, a typed amount in
minor units, what staff read about a document's e-invoice validation, and the URLs of a model admin's own pages."""

from decimal import Decimal

from django import forms
from django.urls import path
from django.utils.html import format_html, format_html_join

from subscriptions.admin import ReadOnlyAdmin
from subscriptions.admin import ReadOnlyInline as SubscriptionsReadOnlyInline
from subscriptions.money import format_money_staff, minor_digits

__all__ = [
    "AmountField",
    "ReadOnlyAdmin",
    "ReadOnlyInline",
    "einvoice_validation_summary",
    "money",
    "OwnPages",
    "to_minor",
]

# Staff-facing amounts: "USD 1,234.50" (unambiguous across currencies; no locale guessing in the back office).
money = format_money_staff


class ReadOnlyInline(SubscriptionsReadOnlyInline):
    show_change_link = False


def to_minor(value: Decimal, currency: str) -> int:
    """A staff-typed amount ("1234.50") in the currency's minor unit; refuses more decimals than the currency has."""
    digits = minor_digits(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise forms.ValidationError(f"{currency} amounts have at most {digits} decimals.")
    return int(scaled)


class AmountField(forms.DecimalField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 14)
        kwargs.setdefault("decimal_places", 3)
        super().__init__(**kwargs)


def einvoice_validation_summary(validation: dict, *, e_invoiced: bool) -> str:
    """What staff read about a document's EN 16931 XML: passed (with warnings), or each failed rule."""
    if not e_invoiced:
        return "Not an e-invoice (plain PDF)."
    if not validation:
        return "Not validated yet: the XML is validated when the PDF is rendered (and before issue)."
    checked = validation.get("checked_at", "")[:19].replace("T", " ")
    if validation.get("valid"):
        return format_html(
            "Valid: XSD and EN 16931 Schematron, 0 failed assertions ({} warnings), checked {} UTC.",
            validation.get("warnings", 0),
            checked,
        )
    problems = validation.get("xsd_errors") or [f"{f['rule']}: {f['message']}" for f in validation.get("failed", [])]
    return format_html(
        "<strong>Invalid</strong> ({} UTC):<ul>{}</ul>",
        checked,
        format_html_join("", "<li>{}</li>", ((problem,) for problem in problems)),
    )


class OwnPages:
    """A model admin with pages of its own (a button's action, a download, a review step): `own_pages` lists each as
    `(route, view method name, URL name)`; they come before the admin's usual URLs, behind the admin site's login and
    staff check (`admin_view`). Each view still asks the policy table itself."""

    own_pages: tuple[tuple[str, str, str], ...] = ()

    def get_urls(self):
        own = [
            path(route, self.admin_site.admin_view(getattr(self, view)), name=name)
            for route, view, name in self.own_pages
        ]
        return own + super().get_urls()
