"""Template helpers of the customer portal (`portal_tags`: `{% money %}`, `{% day %}`, `{% moment %}` in the
customer's locale, and small page helpers)."""
