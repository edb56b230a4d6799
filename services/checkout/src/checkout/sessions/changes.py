"""Status reads that wait for their checkout to change (``GET /api/checkout/session/{id}?wait=``).

A shopper back from Stripe waits for the webhook's ``paid``. Asking again every few seconds
shows it late and costs a read each time; a read that waits is answered the moment the status
changes. The trigger of migration ``b7d1e3f5a9c2`` NOTIFYs ``ember_checkout_changed`` with the
order id when a checkout's status changes (at commit, so a woken read sees it), and every
replica LISTENs, so the read is woken whichever replica the webhook reached.

Without the LISTEN (Postgres away, not connected yet) a waiting read looks again every
:data:`UNHEARD_POLL_S` instead: slower, never stuck.

A change this process writes (the payment's webhook) is handed to the reads waiting here with
its row, once its transaction commits (:meth:`CheckoutChanges.hand_over`): they answer with it
instead of looking again, one read of the row less per payment. Its NOTIFY still wakes the reads
of other replicas, which look; here a NOTIFY of the order is held back while the hand-over is
due (it may be heard before the commit's own answer), and a transaction that ends without its
commit wakes the reads to look.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from ember_shared.pg_listen import NotifyListener
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from checkout.models import CheckoutSession

CHANNEL = "ember_checkout_changed"
#: How often a waiting read looks again while the process is not listening.
UNHEARD_POLL_S = 0.5


class Watch:
    """One read's wait for its checkout to change: set by the change's NOTIFY (the read looks
    again), or by a change this process committed, with the row as committed (:attr:`row`)."""

    __slots__ = ("changed", "row")

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.row: CheckoutSession | None = None

    def woken(self) -> CheckoutSession | None:
        """Ready the watch for the next change, and hand over the row a change committed here
        brought, if one did (None: the read looks)."""
        self.changed.clear()
        row, self.row = self.row, None
        return row


class CheckoutChanges:
    """The reads waiting on each order id, woken by its NOTIFY or by a change committed here."""

    def __init__(self, engine: AsyncEngine, retry_s: float = 5.0) -> None:
        self._waiting: dict[str, set[Watch]] = {}
        #: Order ids whose change a transaction of this process is writing (how many), whose
        #: reads get its row at the commit (:meth:`hand_over`).
        self._due: dict[str, int] = {}
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
    def watch(self, order_id: str) -> Iterator[Watch]:
        """A watch set when ``order_id``'s status changes. Taken before the read it guards, so
        a change committed between that read and the wait still wakes it."""
        watch = Watch()
        self._waiting.setdefault(order_id, set()).add(watch)
        try:
            yield watch
        finally:
            waiting = self._waiting.get(order_id)
            if waiting is not None:
                waiting.discard(watch)
                if not waiting:
                    del self._waiting[order_id]

    def hand_over(self, session: AsyncSession, row: CheckoutSession) -> None:
        """``row`` (as it will be committed) is written by ``session``'s transaction: when that
        commits, the reads waiting here for its checkout are woken with it; when it ends
        otherwise, they are woken to look. Until then their wake-up by a NOTIFY of the order is
        held back (the NOTIFY of this very change may be heard before the commit's answer, and
        one from before it is superseded by it). Nothing is done when no read waits here."""
        order_id = str(row.order_id)
        if order_id not in self._waiting:
            return
        self._due[order_id] = self._due.get(order_id, 0) + 1
        committed = False
        done = False

        def after_commit(sync: Session) -> None:
            nonlocal committed
            if not sync.in_nested_transaction():
                committed = True

        def after_transaction_end(_sync: Session, transaction: SessionTransaction) -> None:
            nonlocal done
            if done or transaction.parent is not None:
                return
            done = True
            left = self._due.pop(order_id, 1) - 1
            if left:
                self._due[order_id] = left
            for watch in self._waiting.get(order_id, ()):
                if committed:
                    watch.row = row
                watch.changed.set()

        sync = session.sync_session
        event.listen(sync, "after_commit", after_commit)
        event.listen(sync, "after_transaction_end", after_transaction_end)

    async def wait(self, watch: Watch, seconds: float) -> None:
        """Until ``watch`` is set or ``seconds`` pass (at most :data:`UNHEARD_POLL_S` while
        the NOTIFY cannot reach this process); the caller reads again (or takes the row handed
        over) either way."""
        changed = watch.changed
        if not self.listening:
            await self.ensure()
            if self.listening:
                # Heard only from now on: a change committed before was not, so look first.
                return
            seconds = min(seconds, UNHEARD_POLL_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), seconds)

    def _changed(self, order_id: str) -> None:
        if order_id in self._due:
            return  # the transaction writing it here hands its row over (or wakes them) at its end
        for watch in self._waiting.get(order_id, ()):
            watch.changed.set()

    def _heard_nothing(self) -> None:
        """A NOTIFY (handled by ``_changed``) or the lost connection: on the latter every waiting
        read looks again now, as nothing would tell it of a change any more."""
        if not self.listening:
            for waiting in self._waiting.values():
                for watch in waiting:
                    watch.changed.set()
