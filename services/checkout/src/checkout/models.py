"""Tables of the checkout service, all in Postgres schema ``checkout``."""

from __future__ import annotations

from ember_shared.db import service_base

Base = service_base("checkout")
