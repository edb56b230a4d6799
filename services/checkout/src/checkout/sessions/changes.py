"""Status reads that wait for their checkout to change (``GET /api/checkout/session/{id}?wait=``).

A shopper back from Stripe waits for the webhook's ``paid``. Asking again every few seconds
shows it late and costs a read each time; a read that waits is answered the moment the status
changes. The trigger of migration ``b7d1e3f5a9c2`` NOTIFYs ``ember_checkout_changed`` with the
order id when a checkout's status changes (at commit, so a woken read sees it), and every
replica LISTENs, so the read is woken whichever replica the webhook reached.

Without the LISTEN (Postgres away, not connected yet) a waiting read looks again every
:data:`UNHEARD_POLL_S` instead: slower, never stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from ember_shared.pg_listen import NotifyListener
from sqlalchemy.ext.asyncio import AsyncEngine

CHANNEL = "ember_checkout_changed"
#: How often a waiting read looks again while the process is not listening.
UNHEARD_POLL_S = 0.5


class CheckoutChanges:
    """The reads waiting on each order id, woken by its NOTIFY."""

    def __init__(self, engine: AsyncEngine, retry_s: float = 5.0) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._listener = NotifyListener(
            engine, CHANNEL, self._heard_nothing, retry_s, on_payload=self._changed
        )

    @property
    def listening(self) -> bool:
        return self._listener.listening

    async def ensure(self) -> None:
        await self._listener.ensure()

    async def aclose(self) -> None:
        await self._listener.close()

    @contextlib.contextmanager
    def watch(self, order_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``order_id``'s status changes. Taken before the read it guards, so
        a change committed between that read and the wait still wakes it."""
        changed = asyncio.Event()
        self._waiting.setdefault(order_id, set()).add(changed)
        try:
            yield changed
        finally:
            waiting = self._waiting.get(order_id)
            if waiting is not None:
                waiting.discard(changed)
                if not waiting:
                    del self._waiting[order_id]

    async def wait(self, changed: asyncio.Event, seconds: float) -> None:
        """Until ``changed`` is set or ``seconds`` pass (at most :data:`UNHEARD_POLL_S` while
        the NOTIFY cannot reach this process); the caller reads again either way."""
        if not self.listening:
            await self.ensure()
            if self.listening:
                # Heard only from now on: a change committed before was not, so look first.
                return
            seconds = min(seconds, UNHEARD_POLL_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), seconds)

    def _changed(self, order_id: str) -> None:
        for changed in self._waiting.get(order_id, ()):
            changed.set()

    def _heard_nothing(self) -> None:
        """A NOTIFY (handled by ``_changed``) or the lost connection: on the latter every waiting
        read looks again now, as nothing would tell it of a change any more."""
        if not self.listening:
            for waiting in self._waiting.values():
                for changed in waiting:
                    changed.set()
