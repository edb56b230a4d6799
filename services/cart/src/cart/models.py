"""Tables of the cart service, all in Postgres schema ``cart``."""

from __future__ import annotations

from ember_shared.db import service_base

Base = service_base("cart")
