"""Queries on the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select

from identity.models import AuditEntry


class AuditRepository(SQLAlchemyAsyncRepository[AuditEntry]):
    model_type = AuditEntry

    async def page(
        self,
        *,
        user_id: uuid.UUID | None,
        action: str | None,
        limit: int,
        offset: int,
    ) -> tuple[Sequence[AuditEntry], int]:
        query = select(AuditEntry)
        count = select(func.count()).select_from(AuditEntry)
        if user_id is not None:
            query = query.where(AuditEntry.user_id == user_id)
            count = count.where(AuditEntry.user_id == user_id)
        if action:
            query = query.where(AuditEntry.action == action)
            count = count.where(AuditEntry.action == action)
        rows = await self.session.scalars(
            query.order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())
            .limit(limit)
            .offset(offset)
        )
        total = await self.session.scalar(count)
        return rows.all(), int(total or 0)
