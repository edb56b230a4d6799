"""Queries on the suppression list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from notifier.models import Suppression


def normalize_email(address: str) -> str:
    return address.strip().lower()


class SuppressionRepository(SQLAlchemyAsyncRepository[Suppression]):
    model_type = Suppression

    async def is_suppressed(self, address: str) -> bool:
        found = await self.session.execute(
            select(Suppression.id).where(Suppression.email == normalize_email(address)).limit(1)
        )
        return found.first() is not None

    async def suppressed_among(self, addresses: Iterable[str]) -> set[str]:
        wanted = {normalize_email(a) for a in addresses}
        if not wanted:
            return set()
        rows = await self.session.execute(
            select(Suppression.email).where(Suppression.email.in_(sorted(wanted)))
        )
        return set(rows.scalars())

    async def add_once(self, *, email: str, reason: str, source: str, note: str = "") -> bool:
        """Suppress ``email``; False when it already was (the first reason is kept)."""
        statement = (
            insert(Suppression)
            .values(email=normalize_email(email), reason=reason, source=source, note=note)
            .on_conflict_do_nothing(index_elements=[Suppression.email])
            .returning(Suppression.id)
        )
        return (await self.session.execute(statement)).first() is not None

    async def find(self, address: str) -> Suppression | None:
        return await self.get_one_or_none(Suppression.email == normalize_email(address))

    async def remove(self, address: str) -> bool:
        result = await self.session.execute(
            delete(Suppression).where(Suppression.email == normalize_email(address))
        )
        return bool(getattr(result, "rowcount", 0))

    async def page(
        self, *, email: str | None, reason: str | None, limit: int, offset: int
    ) -> tuple[Sequence[Suppression], int]:
        conditions = []
        if email is not None:
            conditions.append(Suppression.email == normalize_email(email))
        if reason is not None:
            conditions.append(Suppression.reason == reason)
        total = (
            await self.session.execute(
                select(func.count()).select_from(Suppression).where(*conditions)
            )
        ).scalar_one()
        rows = (
            await self.session.execute(
                select(Suppression)
                .where(*conditions)
                .order_by(Suppression.created_at.desc(), Suppression.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).scalars()
        return list(rows), int(total)
