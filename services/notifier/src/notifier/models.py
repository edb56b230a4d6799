"""Tables of the notifier service, all in Postgres schema ``notifier``."""

from __future__ import annotations

from ember_shared.db import service_base

Base = service_base("notifier")
