"""Parsing numbers that come from people and integrators: one parser for every surface.

`int()` is the wrong tool for request data: it accepts any Unicode decimal digit (`int("١٢")` is 12) while
`str.isdigit()` also says yes to superscripts (`"²".isdigit()` is True, `int("²")` raises), and it refuses strings
over 4,300 digits with a ValueError that callers rarely expect. A number typed by a user is ASCII digits, at most one
leading minus, and within the bounds the caller states; anything else is "not a number" (None), which the caller turns
into its form error, 400 or 404.
"""

import re

# 19 digits hold every 64-bit value; longer input is refused before any conversion work.
_ASCII_INT = re.compile(r"-?[0-9]{1,19}")

MAX_DB_ID = 2**63 - 1
# Bounds shared by the portal forms and the API serializers.
MAX_SEATS = 1_000_000
MAX_VERSION = 2**31 - 1
MAX_AMOUNT = 10**15  # minor units: far beyond any invoice, well inside a 64-bit column


def parse_int(value, *, minimum: int, maximum: int) -> int | None:
    """The integer `value` spells in ASCII digits if it lies in [minimum, maximum], else None.

    Accepts an `int` (not a bool) or a string with surrounding whitespace; never raises.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if not _ASCII_INT.fullmatch(text):
            return None
        number = int(text)
    else:
        return None
    return number if minimum <= number <= maximum else None


def parse_id(value) -> int | None:
    """A database id (1 … 2**63-1) from a form or query string, else None."""
    return parse_int(value, minimum=1, maximum=MAX_DB_ID)
