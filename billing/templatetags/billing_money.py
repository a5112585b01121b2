from django import template

from subscriptions.money import format_money

register = template.Library()


@register.simple_tag
def money(amount_minor, currency):
    """{% money invoice.total_minor invoice.currency %}"""
    if amount_minor is None:
        return ""
    return format_money(int(amount_minor), currency)
