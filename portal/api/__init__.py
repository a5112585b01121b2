"""REST API v1 (docs/api.md, docs/openapi.yaml): authentication, idempotency, pagination, throttling, error codes,
and `views/` — thin callers of the same services and selectors the pages use.
"""
