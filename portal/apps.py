from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Customer portal"

    def ready(self):
        # Staff sign-ins, failures and sign-outs are audited whichever form or backend handled them (receivers).
        # Services queue work by task name (subscriptions/dispatch.py), so the web process and every command must have
        # the tasks registered, not only the worker, or a change made there is never provisioned (tasks).
        from portal import receivers, tasks  # noqa: F401  # local import: in ready(), after the models
