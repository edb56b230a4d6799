"""Tables of the catalog service, all in Postgres schema ``catalog``."""

from __future__ import annotations

from ember_shared.db import service_base

Base = service_base("catalog")
