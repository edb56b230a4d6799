"""Reading the audit log (writing it is ``recorder``'s, inside each admin write)."""

from __future__ import annotations

import uuid

from ember_shared.pagination import window
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.audit.recorder import AuditEntity
from catalog.audit.repositories import AuditRepository
from catalog.audit.schemas import AuditEntryOut, AuditLogPage
from catalog.models import AuditEntry


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut(
        id=entry.id,
        at=entry.at,
        actor_id=entry.actor_id,
        actor_email=entry.actor_email,
        action=entry.action,
        entity=entry.entity,
        entity_id=entry.entity_id,
        before=entry.before,
        after=entry.after,
    )


class AuditTrail:
    def __init__(self, session: AsyncSession) -> None:
        self.entries = AuditRepository(session=session, auto_expunge=False)

    async def page(
        self,
        *,
        page: int,
        page_size: int,
        entity: AuditEntity | None,
        entity_id: uuid.UUID | None,
        actor_id: uuid.UUID | None,
    ) -> AuditLogPage:
        entries, total = await self.entries.page(
            **window(page, page_size),
            entity=entity,
            entity_id=entity_id,
            actor_id=actor_id,
        )
        return AuditLogPage.of(
            [entry_out(e) for e in entries], total=total, page=page, page_size=page_size
        )
