from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Customer portal"

    def ready(self):
        # Staff sign-ins, failures and sign-outs are audited whichever form or backend handled them.
        from portal import receivers  # noqa: F401  # local import: in ready(), after the models
