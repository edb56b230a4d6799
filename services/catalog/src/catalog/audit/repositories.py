"""Audit log queries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select

from catalog.models import AuditEntry


class AuditRepository(SQLAlchemyAsyncRepository[AuditEntry]):
    model_type = AuditEntry

    async def page(
        self,
        *,
        limit: int,
        offset: int,
        entity: str | None,
        entity_id: uuid.UUID | None,
        actor_id: uuid.UUID | None,
    ) -> tuple[Sequence[AuditEntry], int]:
        """Entries newest first (``at`` is the transaction's start, so the UUIDv7 id orders the
        entries of one transaction), with the number of entries that match."""
        conditions: list[Any] = []
        if entity is not None:
            conditions.append(AuditEntry.entity == entity)
        if entity_id is not None:
            # Stored as text (some entries are about no single row: `*`, `demo`).
            conditions.append(AuditEntry.entity_id == str(entity_id))
        if actor_id is not None:
            conditions.append(AuditEntry.actor_id == actor_id)
        total = await self.session.scalar(
            select(func.count()).select_from(AuditEntry).where(*conditions)
        )
        entries = await self.session.scalars(
            select(AuditEntry)
            .where(*conditions)
            .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(entries), int(total or 0)
