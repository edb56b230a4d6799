"""A checkout's status for its shopper, now or once it changes (``GET /api/checkout/session/{id}``).

Each look is one Core statement on a pooled connection of the autocommit engine: no
transaction, no ORM session (its identity map, loading and closing cost as much again as the
statement), and no connection held while the read waits for a change.
"""

from __future__ import annotations

import time
import uuid

from ember_shared.problems import not_found
from sqlalchemy.ext.asyncio import AsyncEngine

from checkout.models import CheckoutSession, CheckoutStatus
from checkout.sessions.changes import CheckoutChanges
from checkout.sessions.repositories import look_by_order_id
from checkout.sessions.services import Buyer, may_read

#: Statuses a shopper waits out: the payment may still land.
AWAITING_PAYMENT = frozenset({CheckoutStatus.OPEN.value, CheckoutStatus.PAYMENT_PENDING.value})
#: The longest a read may wait (seconds): under the usual 30 s proxy and client timeouts.
MOST_WAIT_S = 20


class CheckoutStatusReader:
    def __init__(self, autocommit: AsyncEngine, changes: CheckoutChanges) -> None:
        #: The service's engine in autocommit (``app.state.db_autocommit``).
        self.engine = autocommit
        self.changes = changes

    async def view(
        self,
        order_id: uuid.UUID,
        buyer: Buyer,
        stripe_session_id: str | None,
        wait_s: float = 0.0,
    ) -> CheckoutSession:
        """The checkout, for its owner only: the signed-in shopper who started it, the guest
        holding the same cart cookie, or whoever holds Stripe's session id from the redirect.
        Anyone else is told it does not exist.

        With ``wait_s``, a checkout still awaiting its payment is answered when its status
        changes, or as it is after ``wait_s`` seconds."""
        if wait_s <= 0:
            return self._readable(await self._look(order_id), buyer, stripe_session_id)
        deadline = time.monotonic() + min(wait_s, MOST_WAIT_S)
        with self.changes.watch(str(order_id)) as watch:
            row = self._readable(await self._look(order_id), buyer, stripe_session_id)
            while row.status in AWAITING_PAYMENT and (left := deadline - time.monotonic()) > 0:
                await self.changes.wait(watch, left)
                # Readied before the look: a change committed after it wakes the next wait. A
                # change this process committed brought its row: no look needed.
                row = watch.woken() or await self._look(order_id) or row
        return row

    @staticmethod
    def _readable(
        row: CheckoutSession | None, buyer: Buyer, stripe_session_id: str | None
    ) -> CheckoutSession:
        if row is None or not may_read(row, buyer, stripe_session_id):
            raise not_found("checkout")
        return row

    async def _look(self, order_id: uuid.UUID) -> CheckoutSession | None:
        async with self.engine.connect() as connection:
            return await look_by_order_id(connection, order_id)
