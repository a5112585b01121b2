"""`manage.py` commands of subscriptions: `check_catalog` (the catalog's consistency) and
`webhook_secrets_reencrypt` (re-encrypt webhook signing secrets under the current key)."""
