from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Customers & subscriptions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Services queue work by task name (subscriptions/dispatch.py), so every process that serves requests or runs
        # commands must have the tasks registered, not only the worker (which imports them at start).
        from subscriptions import tasks  # noqa: F401  # local import: in ready(), after the models; tasks by name
