"""Validate outbox events against the catalogue's JSON schemas (subscriptions/webhook_schemas.py)."""

import jsonschema
from jsonschema import Draft202012Validator

from subscriptions.models import Event
from subscriptions.services.webhooks import event_payload
from subscriptions.webhook_schemas import event_schema

_FORMATS = Draft202012Validator.FORMAT_CHECKER


def assert_events_match_schemas() -> int:
    """Raise jsonschema.ValidationError for the first event whose payload does not match its type's schema."""
    count = 0
    for event in Event.objects.all().iterator():
        payload = event_payload(event)
        try:
            jsonschema.validate(payload, event_schema(event.type), format_checker=_FORMATS)
        except jsonschema.ValidationError as error:
            raise AssertionError(f"{event.type} {event.public_id} does not match its schema: {error.message}") from None
        count += 1
    return count
