"""Errors a customer can read. Each carries a stable `code` (used by the API) and a human message."""


class SubscriptionError(Exception):
    code = "subscription_error"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class InvalidTransition(SubscriptionError):
    code = "invalid_transition"


class NoteInvalid(SubscriptionError):
    code = "note_invalid"
    field = "body"


class CatalogError(SubscriptionError):
    code = "catalog_invalid"


class PackageNotAvailable(SubscriptionError):
    code = "package_not_available"
    field = "package"
