"""The orders service's outbox: events leave only through it, in the transaction of the change."""

from __future__ import annotations

from ember_shared.events import Outbox

from orders.models import Base

outbox = Outbox("orders", Base.metadata)
