"""Every query on ``provider_events``. Nothing here commits: the request owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from checkout.models import CheckoutSession, ProviderEvent
from checkout.sessions.repositories import CHECKOUT_SESSIONS, MOVABLE, MOVED_VALUES

#: Every webhook's claim, built once (its cache key memoized on it; one made per call with its
#: values in it had them walked for the key on every delivery).
_EVENTS = cast(Table, ProviderEvent.__table__)
# On the table, not the entity: the ORM's DML path makes an annotated copy per execution,
# whose key is walked again.
_CLAIM = (
    insert(_EVENTS)
    .values(
        event_id=bindparam("event_id"),
        provider="stripe",
        type=bindparam("type"),
        object_id=bindparam("object_id"),
        stripe_created=bindparam("stripe_created"),
        outcome=bindparam("outcome"),
        checkout_session_id=bindparam("checkout_session_id"),
    )
    .on_conflict_do_nothing(index_elements=["event_id"])
    .returning(_EVENTS.c.event_id)
)
#: The claim with the checkout's move (its row locked by the caller): the row is written only
#: when the event is claimed here, in the same round trip.
_CLAIMED = _CLAIM.cte("claimed")
_MOVED = (
    update(CHECKOUT_SESSIONS)
    .where(CHECKOUT_SESSIONS.c.id == bindparam("row_id"), exists(select(_CLAIMED.c.event_id)))
    .values(MOVED_VALUES)
    .returning(CHECKOUT_SESSIONS.c.updated_at)
    .cte("moved")
)
_CLAIM_MOVING = select(
    _CLAIMED.c.event_id, select(_MOVED.c.updated_at).scalar_subquery().label("updated_at")
)


class ProviderEventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(
        self,
        event_id: str,
        type_: str,
        object_id: str,
        created: dt.datetime | None,
        *,
        outcome: str = "",
        checkout_session_id: uuid.UUID | None = None,
        moved: CheckoutSession | None = None,
    ) -> bool:
        """Record the event id (with its ``outcome`` when known already); False when it was
        recorded before (a redelivery). ``moved``: a checkout the event moved (locked by this
        transaction, no ORM session's), whose :data:`MOVABLE` columns the same statement writes
        when, and only when, the event is claimed.

        A concurrent delivery of the same event waits on the unique index until this
        transaction ends, then finds it recorded: an event's effect happens once.
        """
        parameters: dict[str, Any] = {
            "event_id": event_id,
            "type": type_,
            "object_id": object_id,
            "stripe_created": created,
            "outcome": outcome[:300],
            "checkout_session_id": checkout_session_id,
        }
        if moved is None:
            claimed = await self.session.execute(_CLAIM, parameters)
            return claimed.scalar_one_or_none() is not None
        parameters["row_id"] = moved.id
        parameters |= {f"new_{name}": getattr(moved, name) for name in MOVABLE}
        found = (await self.session.execute(_CLAIM_MOVING, parameters)).first()
        if found is None:
            return False
        moved.updated_at = found.updated_at
        return True

    async def record_outcome(
        self, event_id: str, outcome: str, checkout_session_id: uuid.UUID | None
    ) -> None:
        await self.session.execute(
            update(ProviderEvent)
            .where(ProviderEvent.event_id == event_id)
            .values(outcome=outcome[:300], checkout_session_id=checkout_session_id)
        )

    async def count_for(self, checkout_session_id: uuid.UUID) -> int:
        statement = (
            select(func.count())
            .select_from(ProviderEvent)
            .where(ProviderEvent.checkout_session_id == checkout_session_id)
        )
        return int((await self.session.execute(statement)).scalar_one())
