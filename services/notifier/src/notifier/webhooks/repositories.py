"""Queries on received webhooks."""

from __future__ import annotations

from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy.dialects.postgresql import insert

from notifier.models import WebhookEvent


class WebhookEventRepository(SQLAlchemyAsyncRepository[WebhookEvent]):
    model_type = WebhookEvent
    id_attribute = "svix_id"

    async def insert_once(
        self, *, svix_id: str, type_: str, provider_message_id: str | None, payload: dict[str, Any]
    ) -> bool:
        """Record a webhook; False when this svix id was already recorded (a redelivery)."""
        statement = (
            insert(WebhookEvent)
            .values(
                svix_id=svix_id,
                type=type_,
                provider_message_id=provider_message_id,
                payload=payload,
            )
            .on_conflict_do_nothing(index_elements=[WebhookEvent.svix_id])
            .returning(WebhookEvent.svix_id)
        )
        return (await self.session.execute(statement)).first() is not None
