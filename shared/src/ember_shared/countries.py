"""ISO 3166-1 alpha-2 countries (officially assigned), from pycountry's copy of the standard:
one list for every service that takes an address (identity's address book, checkout's typed-in
address) and one name for each, as a shopper says it ("South Korea", not "Korea, Republic of").
"""

from __future__ import annotations

import pycountry

ISO_COUNTRIES = frozenset(country.alpha_2 for country in pycountry.countries)


def country_name(code: str | None) -> str:
    """The country's everyday English name; the code itself when it names no country."""
    code = (code or "").upper()
    country = pycountry.countries.get(alpha_2=code) if len(code) == 2 else None
    if country is None:
        return code
    return str(getattr(country, "common_name", None) or country.name)
