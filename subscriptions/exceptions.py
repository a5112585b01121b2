"""Errors a customer can read. Each carries a stable `code` (used by the API) and a human message."""


class CustomerError(Exception):
    """The base of every error a customer can read, in any app (`SubscriptionError` here, `billing.exceptions.
    BillingError`): a stable `code` the API maps to 4xx JSON, a human `message`, and the `field` it concerns when
    there is one."""

    code = "error"
    field: str | None = None

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        if field is not None:
            self.field = field


class SubscriptionError(CustomerError):
    code = "subscription_error"


class InvalidTransition(SubscriptionError):
    code = "invalid_transition"


class NoteInvalid(SubscriptionError):
    code = "note_invalid"
    field = "body"


class TrialExtensionInvalid(SubscriptionError):
    code = "trial_extension_invalid"
    field = "reason"


class CatalogError(SubscriptionError):
    code = "catalog_invalid"


class PackageNotAvailable(SubscriptionError):
    code = "package_not_available"
    field = "package"


class UnknownPackage(SubscriptionError):
    code = "package_unknown"
    field = "package"


class SubscriptionNotChangeable(SubscriptionError):
    """The subscription is canceled or ended (or otherwise not in a state that allows this change)."""

    code = "subscription_not_changeable"


class StalePreview(SubscriptionError):
    """Apply found a different subscription version (or different amounts) than the preview the customer saw."""

    code = "stale_preview"

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(
            message
            or "The subscription changed since your preview. Please review the updated preview and confirm again.",
            field=field,
        )


class IdempotencyKeyReused(SubscriptionError):
    code = "idempotency_key_reused"
    field = "idempotency_key"


class NoChange(SubscriptionError):
    code = "no_change"


class InvalidSeatCount(SubscriptionError):
    code = "invalid_seats"
    field = "seats"


class SeatsBelowAssigned(InvalidSeatCount):
    code = "seats_below_assigned"


class SeatsBelowMinimum(InvalidSeatCount):
    code = "seats_below_minimum"


class SeatsAboveMaximum(InvalidSeatCount):
    code = "seats_above_maximum"


class SeatsBelowCommitment(InvalidSeatCount):
    code = "seats_below_commitment"


class AddonNotAvailable(SubscriptionError):
    code = "addon_not_available"
    field = "addon"


class AddonAlreadyActive(SubscriptionError):
    code = "addon_already_active"
    field = "addon"


class AddonNotActive(SubscriptionError):
    code = "addon_not_active"
    field = "addon"


class CancellationError(SubscriptionError):
    code = "cancellation_invalid"


class SeatsExhausted(SubscriptionError):
    code = "seats_exhausted"
    field = "user"


class SeatAssignmentError(SubscriptionError):
    code = "seat_assignment_invalid"
    field = "user"


class MembershipError(SubscriptionError):
    code = "membership_invalid"


class RoleNotGrantable(MembershipError):
    """The inviter may not grant that role (subscriptions/policy.py): answered as 403 by the API."""

    code = "permission_denied"
    field = "role"


class LastOwner(MembershipError):
    code = "last_owner"
    field = "role"


class InvitationError(SubscriptionError):
    code = "invitation_invalid"
    field = "token"


class InvitationExpired(InvitationError):
    code = "invitation_expired"


class WebhookError(SubscriptionError):
    code = "webhook_invalid"


class WebhookUrlRefused(WebhookError):
    """An endpoint URL we will not POST to; `code` says why (docs/webhooks.md "Endpoint URLs")."""

    field = "url"

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class WebhookEventTypesInvalid(WebhookError):
    code = "webhook_event_types_invalid"
    field = "event_types"


class UsageInvalid(SubscriptionError):
    """A usage report that cannot be accepted; nothing of the request is stored."""

    code = "usage_invalid"
