"""The event catalogue as JSON Schema (draft 2020-12): one schema per event type, for the whole payload a receiver
gets. docs/webhooks.md describes them; tests/subscriptions/test_webhook_events.py validates every emitted event."""

from subscriptions.models import EventType, SubscriptionChange, SubscriptionStatus

INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
MONEY = {"type": "integer", "description": "Minor units of `currency`."}
CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$"}
TIME = {"type": ["string", "null"], "format": "date-time"}
DATE = {"type": ["string", "null"], "format": "date"}
NULLABLE_INT = {"type": ["integer", "null"]}


def _object(name: str, properties: dict) -> dict:
    properties = {"object": {"const": name}, "id": INT, **properties}
    return {"type": "object", "required": sorted(properties), "properties": properties, "additionalProperties": False}


SUBSCRIPTION = _object(
    "subscription",
    {
        "status": {"enum": list(SubscriptionStatus.values)},
        "package": {
            "type": "object",
            "required": ["slug", "name"],
            "properties": {"slug": STR, "name": STR},
            "additionalProperties": False,
        },
        "interval": {"enum": ["month", "year"]},
        "currency": CURRENCY,
        "seats": INT,
        "included_seats": INT,
        "flat_amount_minor": MONEY,
        "seat_amount_minor": MONEY,
        "current_period_start": TIME,
        "current_period_end": TIME,
        "trial_end": TIME,
        "cancel_at_period_end": BOOL,
        "canceled_at": TIME,
        "ended_at": TIME,
        "version": INT,
        "change": {
            "enum": sorted({*SubscriptionChange.Kind.values, "created", "renewal", "status", "canceled", "ended"}),
            "description": "What changed (docs/webhooks.md).",
        },
    },
)
ENTITLEMENT = _object(
    "entitlement",
    {
        "feature_key": STR,
        "user_id": NULLABLE_INT,
        "value_kind": STR,
        "desired_value": NULLABLE_INT,
        "applied_value": NULLABLE_INT,
        "state": {"enum": ["pending", "active", "revoking", "revoked", "failed"]},
        "error": STR,
        "activated_at": TIME,
    },
)
INVOICE = _object(
    "invoice",
    {
        "number": {"type": ["string", "null"]},
        "status": {"enum": ["draft", "held", "open", "paid", "void", "uncollectible"]},
        "kind": STR,
        "currency": CURRENCY,
        "subtotal_minor": MONEY,
        "tax_minor": MONEY,
        "total_minor": MONEY,
        "amount_paid_minor": MONEY,
        "amount_credited_minor": MONEY,
        "amount_due_minor": MONEY,
        "subscription_id": NULLABLE_INT,
        "period_start": TIME,
        "period_end": TIME,
        "issued_at": TIME,
        "due_on": DATE,
        "paid_at": TIME,
        "voided_at": TIME,
        "po_number": STR,
        "hold_reasons": {"type": "array", "items": STR},
    },
)
CREDIT_NOTE = _object(
    "credit_note",
    {
        "number": STR,
        "invoice_id": INT,
        "invoice_number": {"type": ["string", "null"]},
        "currency": CURRENCY,
        "reason_code": STR,
        "subtotal_minor": MONEY,
        "tax_minor": MONEY,
        "total_minor": MONEY,
        "refund_due_minor": MONEY,
        "is_full": BOOL,
        "issued_at": TIME,
    },
)
PAYMENT = _object(
    "payment",
    {
        "invoice_id": INT,
        "kind": {"enum": ["manual", "card"]},
        "status": {"enum": ["succeeded", "failed"]},
        "amount_minor": MONEY,
        "currency": CURRENCY,
        "attempt": INT,
        "off_session": BOOL,
        "failure_code": STR,
        "failure_message": STR,
        "created_at": TIME,
    },
)
_EXEMPTION_FIELDS = {
    "status": {"enum": ["submitted", "approved", "rejected", "expired", "superseded"]},
    "jurisdictions": {"type": "array", "items": STR, "minItems": 1},
    "exemption_type": STR,
    "certificate_number": STR,
    "expires_on": DATE,
    "decision_reason": STR,
}
TAX_EXEMPTION = _object("tax_exemption", _EXEMPTION_FIELDS)
TAX_EXEMPTION_EXPIRING = _object("tax_exemption", {**_EXEMPTION_FIELDS, "days_left": INT})
MEMBER = _object("member", {"user_id": INT, "email": STR, "role": {"enum": ["owner", "billing_admin", "member"]}})
# The journey stages of billing/health/formulas.py STAGES (a test keeps the two lists equal; this layer cannot import
# billing). Internal: only staff endpoints receive customer.stage_changed.
JOURNEY_STAGES = ["onboarding", "adopting", "established", "expanding", "at_risk", "churned"]
CUSTOMER_STAGE = _object(
    "customer",
    {
        "previous_stage": {"enum": [*JOURNEY_STAGES, None], "description": "null at the customer's first scoring."},
        "stage": {"enum": JOURNEY_STAGES},
        "changed_at": {"type": "string", "format": "date-time"},
    },
)
ENDPOINT_TEST = _object("webhook_endpoint", {"url": STR, "message": STR})

DATA_SCHEMAS: dict[str, dict] = {
    EventType.SUBSCRIPTION_CREATED: SUBSCRIPTION,
    EventType.SUBSCRIPTION_UPDATED: SUBSCRIPTION,
    EventType.SUBSCRIPTION_CANCELED: SUBSCRIPTION,
    EventType.ENTITLEMENT_UPDATED: ENTITLEMENT,
    EventType.INVOICE_ISSUED: INVOICE,
    EventType.INVOICE_HELD: INVOICE,
    EventType.INVOICE_PAID: INVOICE,
    EventType.INVOICE_VOIDED: INVOICE,
    EventType.INVOICE_OVERDUE: INVOICE,
    EventType.CREDIT_NOTE_ISSUED: CREDIT_NOTE,
    EventType.PAYMENT_SUCCEEDED: PAYMENT,
    EventType.PAYMENT_FAILED: PAYMENT,
    EventType.TAX_EXEMPTION_SUBMITTED: TAX_EXEMPTION,
    EventType.TAX_EXEMPTION_DECIDED: TAX_EXEMPTION,
    EventType.TAX_EXEMPTION_EXPIRING: TAX_EXEMPTION_EXPIRING,
    EventType.MEMBER_ADDED: MEMBER,
    EventType.MEMBER_REMOVED: MEMBER,
    EventType.CUSTOMER_STAGE_CHANGED: CUSTOMER_STAGE,
    EventType.WEBHOOK_TEST: ENDPOINT_TEST,
}

_OBJECT_TYPES = {schema["properties"]["object"]["const"] for schema in DATA_SCHEMAS.values()}


def event_schema(event_type: str) -> dict:
    """The JSON Schema of a whole delivered payload of `event_type`."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": event_type,
        "type": "object",
        "required": [
            "id",
            "type",
            "api_version",
            "created",
            "customer",
            "object_type",
            "object_id",
            "sequence",
            "data",
        ],
        "properties": {
            "id": {"type": "string", "pattern": "^evt_[0-9a-f]{24}$"},
            "type": {"const": event_type},
            "api_version": STR,
            "created": {"type": "string", "format": "date-time"},
            "customer": {"type": ["integer", "null"], "description": "The customer's id; null only for test events."},
            "object_type": {"enum": sorted(_OBJECT_TYPES)},
            "object_id": STR,
            "sequence": {"type": "integer", "minimum": 1},
            "data": DATA_SCHEMAS[event_type],
        },
        "additionalProperties": False,
    }
