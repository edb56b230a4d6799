"""Queries on received webhooks."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session
from sqlalchemy.sql.dml import ReturningInsert

from notifier.models import PendingEmail, WebhookEvent

_EVENTS = cast(Table, WebhookEvent.__table__)
_EMAILS = cast(Table, PendingEmail.__table__)


def _record(
    svix_id: str, type_: str, provider_message_id: str | None, payload: dict[str, Any]
) -> ReturningInsert[tuple[str]]:
    """The webhook's row unless its svix id is recorded already, returning the id if inserted."""
    return (
        insert(WebhookEvent)
        .values(
            svix_id=svix_id, type=type_, provider_message_id=provider_message_id, payload=payload
        )
        .on_conflict_do_nothing(index_elements=[WebhookEvent.svix_id])
        .returning(WebhookEvent.svix_id)
    )


def _recorded_and_reported() -> Any:
    """The statement of :func:`insert_once_and_report`, built once on
    the tables with bound parameters (one per mail sent: built per call, its coercion, cache
    key and the ORM's bulk-DML path were most of the webhook's own CPU)."""
    recorded = (
        insert(_EVENTS)
        .values(
            # Named apart from pending_emails' columns: a parameter named as a column of an
            # UPDATE's table would be SET by the UPDATE as well.
            {
                name: bindparam(f"event_{name}", type_=_EVENTS.c[name].type)
                for name in ("svix_id", "type", "provider_message_id", "payload")
            }
        )
        .on_conflict_do_nothing(index_elements=[_EVENTS.c.svix_id])
        .returning(_EVENTS.c.svix_id)
        .cte("recorded")
    )
    reported = (
        update(_EMAILS)
        .where(
            _EMAILS.c.provider_message_id
            == bindparam("message_id", type_=_EMAILS.c.provider_message_id.type),
            _EMAILS.c.delivery_status.is_(None),
            select(recorded.c.svix_id).exists(),
        )
        .values(
            delivery_status=bindparam("report", type_=_EMAILS.c.delivery_status.type),
            delivery_updated_at=bindparam("at", type_=_EMAILS.c.delivery_updated_at.type),
        )
        .returning(_EMAILS.c.id)
        .cte("reported")
    )
    # Both CTEs run whatever the outer query reads; it reads both so both are rendered.
    return select(
        select(func.count()).select_from(recorded).scalar_subquery(),
        select(func.count()).select_from(reported).scalar_subquery(),
    )


_RECORDED_AND_REPORTED = _recorded_and_reported()


async def insert_once_and_report(
    executor: AsyncConnection | AsyncSession | async_scoped_session[AsyncSession],
    *,
    svix_id: str,
    type_: str,
    provider_message_id: str,
    payload: dict[str, Any],
    delivery_status: str,
    at: dt.datetime,
) -> bool:
    """The webhook recorded unless its svix id is there already, and when it was recorded, the
    report on the sent mail (unless one is already set, as ``set_delivery(overwrite=False)``),
    in one statement: the report reads the insert's RETURNING, so a redelivery changes nothing.
    One round trip where the insert and the update took two, on every mail's delivery report;
    on an autocommit connection, the whole transaction. True when it was recorded now."""
    parameters = {
        "event_svix_id": svix_id,
        "event_type": type_,
        "event_provider_message_id": provider_message_id,
        "event_payload": payload,
        "message_id": provider_message_id,
        "report": delivery_status,
        "at": at,
    }
    first, _ = (await executor.execute(_RECORDED_AND_REPORTED, parameters)).one()
    return bool(first)


class WebhookEventRepository(SQLAlchemyAsyncRepository[WebhookEvent]):
    model_type = WebhookEvent
    id_attribute = "svix_id"

    async def insert_once(
        self, *, svix_id: str, type_: str, provider_message_id: str | None, payload: dict[str, Any]
    ) -> bool:
        """Record a webhook; False when this svix id was already recorded (a redelivery)."""
        statement = _record(svix_id, type_, provider_message_id, payload)
        return (await self.session.execute(statement)).first() is not None
