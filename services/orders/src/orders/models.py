"""Tables of the orders service, all in Postgres schema ``orders``."""

from __future__ import annotations

from ember_shared.db import service_base

Base = service_base("orders")
