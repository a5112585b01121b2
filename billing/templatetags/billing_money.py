from django import template

from billing.money import format_minor

register = template.Library()


@register.simple_tag
def money(amount_minor, currency):
    """{% money invoice.total_minor invoice.currency %}"""
    if amount_minor is None:
        return ""
    return format_minor(int(amount_minor), currency)
