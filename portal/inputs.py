"""Ids named by a portal form or query string, through the one shared parser (subscriptions/inputs.py).

A missing id is None (the caller picks a default or answers 404); a malformed one (`²`, `١`, 5,000 digits, `-3`) is
a 400: it names nothing and is never handed to `int()` or the database.
"""

from django.core.exceptions import BadRequest

from subscriptions.inputs import parse_id


def id_from_request(value) -> int | None:
    text = "" if value is None else str(value)
    if not text.strip():
        return None
    number = parse_id(text)
    if number is None:
        raise BadRequest("That id is not a whole number.")
    return number
