"""ISO 3166-1 alpha-2 country codes: the shared list (checkout refuses the same codes)."""

from __future__ import annotations

from ember_shared.countries import ISO_COUNTRIES

__all__ = ["ISO_COUNTRIES"]
