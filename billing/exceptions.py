"""Billing errors a customer (or billing staff) can read. Like subscriptions.exceptions.SubscriptionError they extend
`CustomerError`: a stable `code` the API maps to 4xx JSON, a human `message`, and the `field` it concerns when there
is one."""

from subscriptions.exceptions import CustomerError


class BillingError(CustomerError):
    code = "billing_error"


class BillingProfileInvalid(BillingError):
    code = "billing_profile_invalid"


class BillingFieldNotEditable(BillingError):
    """A customer tried to change a field agreed with billing staff (payment terms, currency): 403 in the API."""

    code = "permission_denied"


class TaxIdInvalid(BillingError):
    code = "tax_id_invalid"
    field = "tax_id"


class InvalidTransition(BillingError):
    code = "invalid_transition"
    field = "status"


class InvoiceImmutable(BillingError):
    """An issued invoice never changes: corrections go through credit notes."""

    code = "invoice_immutable"


class InvoiceNotIssuable(BillingError):
    code = "invoice_not_issuable"


class CurrencyMismatch(BillingError):
    code = "currency_mismatch"
    field = "currency"


class PaymentInvalid(BillingError):
    code = "payment_invalid"
    field = "amount"


class CreditNoteInvalid(BillingError):
    code = "credit_note_invalid"


class ReasonCodeInvalid(BillingError):
    code = "reason_code_invalid"
    field = "reason_code"


class CertificateInvalid(BillingError):
    code = "certificate_invalid"
    field = "certificate"


class ExemptionInvalid(BillingError):
    code = "exemption_invalid"


class NotFound(BillingError):
    """Also raised for another customer's object, so its existence is never revealed."""

    code = "not_found"


class StaleVersion(BillingError):
    code = "stale_version"
    field = "version"


# --- Payments (billing.services.payments) ---------------------------------------------------------------------------


class PaymentMethodNotSaved(BillingError):
    code = "payment_method_not_saved"
    field = "payment_method"


class PaymentNotPossible(BillingError):
    """Nothing to pay, no card, or card payments are not configured."""

    code = "payment_not_possible"


class CardDeclined(BillingError):
    """The card issuer said no; the message is the one Stripe writes for customers."""

    code = "card_declined"
    field = "payment_method"


class PaymentProviderUnavailable(BillingError):
    code = "payment_provider_unavailable"


class EInvoiceInvalid(BillingError):
    """The document's EN 16931 XML fails the XSD or a business rule; `validation` is the full result."""

    code = "einvoice_invalid"

    def __init__(self, message: str, *, validation: dict | None = None):
        super().__init__(message)
        self.validation = validation or {}


class EInvoiceNotAvailable(NotFound):
    """Asked for the e-invoice of a document that was not issued as one (a 404 like any missing document)."""


class EInvoiceFormatInvalid(BillingError):
    code = "format_invalid"
    field = "format"


# --- Discounts (billing.services.discounts) -------------------------------------------------------------------------


class CouponImmutable(BillingError):
    code = "coupon_immutable"


class DiscountInvalid(BillingError):
    code = "discount_invalid"


class PromotionCodeError(BillingError):
    field = "promotion_code"


class PromotionCodeInvalid(PromotionCodeError):
    """Unknown, inactive or malformed: one message for all, so codes cannot be probed."""

    code = "promotion_code_invalid"


class PromotionCodeExpired(PromotionCodeError):
    code = "promotion_code_expired"


class PromotionCodeNotApplicable(PromotionCodeError):
    code = "promotion_code_not_applicable"


class PromotionCodeLimitReached(PromotionCodeError):
    code = "promotion_code_limit_reached"


class PromotionCodeThrottled(PromotionCodeError):
    code = "promotion_code_throttled"


class HealthWeightsInvalid(BillingError):
    code = "health_weights_invalid"
    field = "weights"
