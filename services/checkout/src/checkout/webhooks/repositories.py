"""Every query on ``provider_events``. Nothing here commits: the request owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from checkout.models import ProviderEvent


class ProviderEventRepository(SQLAlchemyAsyncRepository[ProviderEvent]):
    model_type = ProviderEvent
    id_attribute = "event_id"

    async def claim(
        self,
        event_id: str,
        type_: str,
        object_id: str,
        created: dt.datetime | None,
        *,
        outcome: str = "",
        checkout_session_id: uuid.UUID | None = None,
    ) -> bool:
        """Record the event id (with its ``outcome`` when known already); False when it was
        recorded before (a redelivery).

        A concurrent delivery of the same event waits on the unique index until this
        transaction ends, then finds it recorded: an event's effect happens once.
        """
        statement = (
            insert(ProviderEvent)
            .values(
                event_id=event_id,
                provider="stripe",
                type=type_,
                object_id=object_id,
                stripe_created=created,
                outcome=outcome[:300],
                checkout_session_id=checkout_session_id,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
            .returning(ProviderEvent.event_id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

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
