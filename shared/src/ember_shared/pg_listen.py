"""A Postgres LISTEN on a connection of its own, for loops that poll and would rather be woken.

The outbox relay (``NOTIFY ember_outbox_<schema>``) and the notifier's worker (``NOTIFY
notifier_mail_queued``) both wake on a NOTIFY sent by the transaction that gave them work.
Polling stays their guarantee: without the connection (Postgres away, a role that may not
connect twice) they only wait longer, and the connection is tried again at most every
``retry_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger("ember.pg_listen")


class NotifyListener:
    def __init__(
        self,
        engine: AsyncEngine,
        channel: str,
        on_notify: Callable[[], None],
        retry_s: float,
        on_payload: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.channel = channel
        self.on_notify = on_notify
        #: Also told each NOTIFY's payload (what changed), for a listener that wakes one waiter.
        self.on_payload = on_payload
        self.retry_s = retry_s
        self._connection: asyncpg.Connection | None = None
        self._retry_at = 0.0

    @property
    def listening(self) -> bool:
        """A NOTIFY sent now reaches this listener (its connection is up)."""
        return self._connection is not None and not self._connection.is_closed()

    async def ensure(self) -> None:
        """Listening when this returns, or left to polling until the next try."""
        if self.listening:
            return
        now = time.monotonic()
        if now < self._retry_at:
            return
        self._retry_at = now + self.retry_s
        await self.close()
        try:
            dsn = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            connection = await asyncpg.connect(dsn, timeout=2)
            await connection.add_listener(self.channel, self._delivered)
            # Losing the connection wakes the loop too: it was waiting for a NOTIFY that can no
            # longer come, and must go back to polling often (and to listening) at once.
            connection.add_termination_listener(self._notified)
        except Exception as exc:  # polling carries on without it
            log.info(
                "listen_unavailable", channel=self.channel, error=f"{type(exc).__name__}: {exc}"
            )
            return
        self._connection = connection

    def _delivered(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        if self.on_payload is not None:
            self.on_payload(payload)
        self.on_notify()

    def _notified(self, *_args: object) -> None:
        self.on_notify()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 2)
