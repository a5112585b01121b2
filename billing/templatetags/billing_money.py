from django import template

from subscriptions.money import format_date, format_money

register = template.Library()


@register.simple_tag
def money(amount_minor, currency):
    """{% money invoice.total_minor invoice.currency %}"""
    if amount_minor is None:
        return ""
    return format_money(int(amount_minor), currency)


@register.simple_tag(takes_context=True)
def day(context, value):
    """`{% day invoice.due_on %}`: a date as the customer reads dates (the document's `where`, its billing country)."""
    return format_date(value, context.get("where") or "US") if value else ""
