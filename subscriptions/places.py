"""Countries and subdivisions, checked against ISO 3166 (pycountry's copy of the Debian iso-codes data).

One place decides what a country or a state/province code is, so the sign-up, the billing details form, the API and
tax exemptions agree: "XX" is not a country, and "US-ZZ" is not a state. Codes are upper-case ISO 3166-1 alpha-2 and
ISO 3166-2 (`US-NY`, `CA-QC`, `DE-BY`).
"""

from functools import lru_cache

import pycountry


@lru_cache(maxsize=512)
def country_exists(code: str) -> bool:
    """True for an ISO 3166-1 alpha-2 code in upper case (`US`, `DE`)."""
    return len(code) == 2 and code.isascii() and code.isupper() and pycountry.countries.get(alpha_2=code) is not None


@lru_cache(maxsize=2048)
def subdivision_exists(country: str, subdivision: str) -> bool:
    """True when `subdivision` (the part after the hyphen: `NY`) is an ISO 3166-2 subdivision of `country`."""
    if not country_exists(country) or not (1 <= len(subdivision) <= 3) or not subdivision.isascii():
        return False
    return pycountry.subdivisions.get(code=f"{country}-{subdivision}") is not None


def jurisdiction_exists(code: str) -> bool:
    """A country (`DE`) or a country and one of its subdivisions (`US-NY`)."""
    country, _, subdivision = code.partition("-")
    if not subdivision:
        return country_exists(country) and "-" not in code
    return subdivision_exists(country, subdivision)


def country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code) if country_exists(code) else None
    return country.name if country else code
