"""Where the orders services found their outbox before it moved to :mod:`orders.events`."""

from __future__ import annotations

from orders.events import outbox

__all__ = ["outbox"]
