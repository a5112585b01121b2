"""`manage.py` commands of billing, thin callers of `billing.services`: `billing_run` (invoice what is due now)
and `revenue_metrics_backfill` (rebuild the revenue month aggregates)."""
