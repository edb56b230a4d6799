"""A checkout's status for its shopper, now or once it changes (``GET /api/checkout/session/{id}``).

Each look is a session of its own on the autocommit sessionmaker: one statement, no
transaction, and no connection held while the read waits for a change.
"""

from __future__ import annotations

import time
import uuid

from ember_shared.problems import not_found
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from checkout.models import CheckoutSession, CheckoutStatus
from checkout.sessions.changes import CheckoutChanges
from checkout.sessions.repositories import CheckoutSessionRepository
from checkout.sessions.services import Buyer, may_read

#: Statuses a shopper waits out: the payment may still land.
AWAITING_PAYMENT = frozenset({CheckoutStatus.OPEN.value, CheckoutStatus.PAYMENT_PENDING.value})
#: The longest a read may wait (seconds): under the usual 30 s proxy and client timeouts.
MOST_WAIT_S = 20


class CheckoutStatusReader:
    def __init__(self, reads: async_sessionmaker[AsyncSession], changes: CheckoutChanges) -> None:
        self.reads = reads
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
        with self.changes.watch(str(order_id)) as changed:
            row = self._readable(await self._look(order_id), buyer, stripe_session_id)
            while row.status in AWAITING_PAYMENT and (left := deadline - time.monotonic()) > 0:
                await self.changes.wait(changed, left)
                # Cleared before the look: a change committed after it wakes the next wait.
                changed.clear()
                row = await self._look(order_id) or row
        return row

    @staticmethod
    def _readable(
        row: CheckoutSession | None, buyer: Buyer, stripe_session_id: str | None
    ) -> CheckoutSession:
        if row is None or not may_read(row, buyer, stripe_session_id):
            raise not_found("checkout")
        return row

    async def _look(self, order_id: uuid.UUID) -> CheckoutSession | None:
        async with self.reads() as session:
            return await CheckoutSessionRepository(session=session).by_order_id(order_id)
