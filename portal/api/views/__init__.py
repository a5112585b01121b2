"""The REST endpoints, one module per resource (accounts, subscriptions and their changes, members, billing,
discounts, entitlements, usage, sign-up, webhooks, docs): thin callers of services and selectors. `base.py` holds
`ApiView`, which every endpoint extends (auth, error format, throttling, input validation, pagination)."""
