"""Tables of the identity service, all in Postgres schema ``identity``."""

from __future__ import annotations

from ember_shared.db import service_base

Base = service_base("identity")
