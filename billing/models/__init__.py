"""Billing models, one module per area; import each here so Django finds them."""
