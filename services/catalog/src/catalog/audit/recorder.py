"""The catalog's audit trail: every admin write, who made it, the state before and after (and
the subscription deliveries the stock could not fill, with no actor, so staff see them).

Rows are written in the same transaction as the write they describe, so there is never a
change without its record, nor a record of a change that was rolled back.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from ember_shared.auth import Principal
from ember_shared.ids import new_id
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.models import AuditEntry

if TYPE_CHECKING:
    from catalog.cache import CatalogCache
    from catalog.settings import CatalogSettings

#: What an entry is about: every value ``record`` is given (the audit log's ``entity`` filter
#: offers exactly these). ``catalog`` is the demo seed, with entity id ``demo``.
AuditEntity = Literal["catalog", "category", "inventory", "product", "product_image"]


def snapshot(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of a row, as JSON-ready builtins (uuids and datetimes as text)."""
    raw = {name: getattr(obj, name) for name in fields}
    return msgspec.to_builtins(raw)  # type: ignore[no-any-return]


class AuditLog:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record(
        self,
        actor: Principal | None,
        action: str,
        entity: AuditEntity,
        entity_id: object,
        *,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> None:
        await self.session.execute(
            insert(AuditEntry).values(
                id=new_id(),
                actor_id=actor.user_id if actor else None,
                actor_email=actor.email if actor else "",
                action=action,
                entity=entity,
                entity_id=str(entity_id),
                before=msgspec.to_builtins(before) if before is not None else None,
                after=msgspec.to_builtins(after) if after is not None else None,
            )
        )


class AuditedAdmin:
    """What every admin service of the catalog works with: the request's session, the cache it
    invalidates on commit, the settings, who acts, and the audit log its writes go to."""

    def __init__(
        self,
        session: AsyncSession,
        cache: CatalogCache,
        settings: CatalogSettings,
        actor: Principal | None,
    ) -> None:
        self.session = session
        self.cache = cache
        self.settings = settings
        self.actor = actor
        self.audit = AuditLog(session)
