"""Queries on received webhooks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.sql.dml import ReturningInsert

from notifier.models import PendingEmail, WebhookEvent


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


class WebhookEventRepository(SQLAlchemyAsyncRepository[WebhookEvent]):
    model_type = WebhookEvent
    id_attribute = "svix_id"

    async def insert_once_and_report(
        self,
        *,
        svix_id: str,
        type_: str,
        provider_message_id: str,
        payload: dict[str, Any],
        delivery_status: str,
        at: dt.datetime,
    ) -> bool:
        """:meth:`insert_once`, and when it inserted, the report on the sent mail (unless one
        is already set, as ``set_delivery(overwrite=False)``), in one statement: the report
        reads the insert's RETURNING, so a redelivery changes nothing. One round trip where
        the insert and the update took two, on every mail's delivery report."""
        recorded = _record(svix_id, type_, provider_message_id, payload).cte("recorded")
        reported = (
            update(PendingEmail)
            .where(
                PendingEmail.provider_message_id == provider_message_id,
                PendingEmail.delivery_status.is_(None),
                select(recorded.c.svix_id).exists(),
            )
            .values(delivery_status=delivery_status, delivery_updated_at=at)
            .returning(PendingEmail.id)
            .cte("reported")
        )
        # Both CTEs run whatever the outer query reads; it reads both so both are rendered.
        statement = select(
            select(func.count()).select_from(recorded).scalar_subquery(),
            select(func.count()).select_from(reported).scalar_subquery(),
        )
        first, _ = (await self.session.execute(statement)).one()
        return bool(first)

    async def insert_once(
        self, *, svix_id: str, type_: str, provider_message_id: str | None, payload: dict[str, Any]
    ) -> bool:
        """Record a webhook; False when this svix id was already recorded (a redelivery)."""
        statement = _record(svix_id, type_, provider_message_id, payload)
        return (await self.session.execute(statement)).first() is not None
