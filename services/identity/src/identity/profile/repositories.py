"""Queries on addresses; every one is scoped to its owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import func, select, update

from identity.models import Address, OAuthLink

MAX_ADDRESSES = 20


class AddressRepository(SQLAlchemyAsyncRepository[Address]):
    model_type = Address

    async def for_user(self, user_id: uuid.UUID) -> Sequence[Address]:
        rows = await self.session.scalars(
            select(Address)
            .where(Address.user_id == user_id)
            .order_by(Address.is_default.desc(), Address.created_at.desc())
            .limit(MAX_ADDRESSES)
        )
        return rows.all()

    async def owned(self, user_id: uuid.UUID, address_id: uuid.UUID) -> Address | None:
        return await self.session.scalar(
            select(Address).where(Address.id == address_id, Address.user_id == user_id)
        )

    async def count_for_user(self, user_id: uuid.UUID) -> int:
        total = await self.session.scalar(
            select(func.count()).select_from(Address).where(Address.user_id == user_id)
        )
        return int(total or 0)

    async def clear_default(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            update(Address)
            .where(Address.user_id == user_id, Address.is_default.is_(True))
            .values(is_default=False)
        )
        # Flushed now: the partial unique index must see the old default gone before a new one.
        await self.session.flush()

    async def newest_other(self, user_id: uuid.UUID, address_id: uuid.UUID) -> Address | None:
        return await self.session.scalar(
            select(Address)
            .where(Address.user_id == user_id, Address.id != address_id)
            .order_by(Address.updated_at.desc(), Address.id.desc())
            .limit(1)
        )


class LinkRepository(SQLAlchemyAsyncRepository[OAuthLink]):
    model_type = OAuthLink

    async def providers_of(self, user_id: uuid.UUID) -> list[str]:
        rows = await self.session.scalars(
            select(OAuthLink.provider)
            .where(OAuthLink.user_id == user_id)
            .order_by(OAuthLink.provider)
        )
        return list(rows.all())

    async def by_subject(self, provider: str, subject: str) -> OAuthLink | None:
        return await self.session.scalar(
            select(OAuthLink).where(OAuthLink.provider == provider, OAuthLink.subject == subject)
        )

    async def by_user(self, provider: str, user_id: uuid.UUID) -> OAuthLink | None:
        return await self.session.scalar(
            select(OAuthLink).where(OAuthLink.provider == provider, OAuthLink.user_id == user_id)
        )
