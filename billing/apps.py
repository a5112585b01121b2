from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Celery's autodiscovery only imports billing.tasks; the payments tasks live in their own module.
        from billing import checks, tasks_payments  # noqa: F401
