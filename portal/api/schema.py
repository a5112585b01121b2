"""OpenAPI generation details: component names from the view's nested serializers, and the error responses every
operation can give (so clients and schemathesis know every documented status)."""

from drf_spectacular.openapi import AutoSchema

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable, e.g. seats_below_assigned."},
                "message": {"type": "string", "description": "Readable by the customer."},
                "field": {
                    "type": "string",
                    "nullable": True,
                    "description": "The input field at fault (dotted when nested), or null.",
                },
                "details": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    "description": "Every field error, when there is more than one.",
                },
                "request_id": {
                    "type": "string",
                    "description": "On a 500 or 503 only: the id of the request, to quote to support.",
                },
            },
            "required": ["code", "message", "field"],
        }
    },
    "required": ["error"],
}

NO_NUL_PATTERN = r"^[^\x00]*$"


# What Python's str.strip() (and so DRF's CharField) strips: every character str.isspace() accepts, spelled out
# because a schema pattern is an ECMA-262 regex, whose \s is a different set (no \x1c-\x1f or \x85, but \ufeff).
STRIPPED = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def non_blank_pattern(min_length: int) -> str:
    """Text that DRF accepts with at least `min_length` characters: CharField strips surrounding whitespace before
    checking blank and minLength, and refuses NUL. So "  " is blank and " ab " is 2 characters long."""
    if min_length <= 1:
        return rf"^[^\x00]*[^{STRIPPED}\x00][^\x00]*$"
    return rf"^[{STRIPPED}]*[^{STRIPPED}\x00][^\x00]{{{min_length - 2},}}[^{STRIPPED}\x00][{STRIPPED}]*$"


ERROR_RESPONSES = {
    "400": "The input is invalid (unknown or malformed fields); `field` names the first one.",
    "401": "No valid credentials were sent.",
    "403": "The caller's role does not allow this.",
    "404": "No such object, or the caller has no access to its customer.",
    "409": "A concurrent or stale change (send the current version).",
    "415": "Unsupported content type.",
    "422": "Understood but refused by a business rule, or an Idempotency-Key reused with a different request.",
    "429": "Too many requests; retry after the Retry-After header's seconds.",
    "500": "An error on our side (code `server_error`); nothing was changed. Quote `request_id` to support.",
    "503": "Briefly unavailable (code `temporarily_unavailable`, e.g. the database was busy); nothing was changed, "
    "so retrying after the Retry-After header's seconds is safe.",
}


class ApiAutoSchema(AutoSchema):
    def get_serializer_name(self, serializer, direction):
        # Views nest Input/Output serializers (HackSoft style): name them after the view, e.g. SeatChangeInput.
        parts = serializer.__class__.__qualname__.split(".")
        if len(parts) > 1:
            owner = parts[-2]
            owner = owner[: -len("Api")] if owner.endswith("Api") else owner
            return owner + parts[-1]
        return super().get_serializer_name(serializer, direction)


def add_error_responses(result, generator, request, public):
    """Postprocessing hook: every operation documents the shared error body for its possible 4xx statuses, and for
    the 500 and 503 any operation can answer (always this JSON body, never an HTML page)."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = ERROR_SCHEMA
    # Every API input serializer is a StrictSerializer: say so, so clients and fuzzers know extras are refused.
    for name, component in components.items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
            # Text fields refuse NUL characters (DRF's CharField does), and a required-non-blank one counts its length
            # after stripping surrounding whitespace: say so, so schema-valid input is input we accept.
            for prop in component.get("properties", {}).values():
                if prop.get("type") == "string" and not ({"format", "pattern", "enum", "$ref"} & set(prop)):
                    min_length = prop.get("minLength", 0)
                    prop["pattern"] = non_blank_pattern(min_length) if min_length else NO_NUL_PATTERN
    ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            statuses = ["400", "401", "403", "404", "429"]
            if method in {"post", "put", "patch", "delete"}:
                statuses += ["409", "415", "422"]
            statuses += ["500", "503"]
            for code in statuses:
                responses.setdefault(
                    code, {"description": ERROR_RESPONSES[code], "content": {"application/json": {"schema": ref}}}
                )
    return result
