from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at module level: Django loads apps.py before any model, and these modules use models.
        from billing import checks, tasks  # noqa: F401  # local import: in ready(); system checks, tasks by name
        from billing.estimates import estimate_invalidation_connect  # local import: in ready(), after the models
        from billing.services import changes, dunning, payments  # local import: in ready(), after the models
        from billing.services.billing_run import billing_run_step_register  # local import: in ready()

        # The upward calls of the billing layers, wired once here (docs/decisions.md, "Billing layers"): a payment's
        # outcome goes to dunning, and every billing run first bills the mid-period changes.
        payments.payment_outcome_listen(
            succeeded=dunning.dunning_payment_succeeded, failed=dunning.dunning_payment_failed
        )
        billing_run_step_register(changes.changes_bill_unbilled)
        # Cached next-invoice estimates depend on the catalog's tax categories and the tax rates (billing/estimates.py).
        estimate_invalidation_connect()
