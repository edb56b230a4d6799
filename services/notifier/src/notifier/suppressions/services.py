"""The suppression list: addresses we must not mail (hard bounces, complaints, staff's choice)."""

from __future__ import annotations

from collections.abc import Sequence

from ember_shared.pagination import window
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import Suppression, SuppressionReason
from notifier.suppressions.repositories import SuppressionRepository, normalize_email


class SuppressionService:
    def __init__(self, session: AsyncSession) -> None:
        self.repo = SuppressionRepository(session=session, auto_commit=False)

    async def page(
        self, *, email: str | None, reason: str | None, page: int, page_size: int
    ) -> tuple[Sequence[Suppression], int]:
        return await self.repo.page(email=email, reason=reason, **window(page, page_size))

    async def add_manual(self, email: str, note: str, actor: str) -> Suppression:
        added = await self.repo.add_once(
            email=email, reason=SuppressionReason.MANUAL.value, source=actor, note=note
        )
        found = await self.repo.find(email)
        if not added or found is None:
            raise Problem(
                409, "already-suppressed", f"{normalize_email(email)} is already suppressed."
            )
        return found

    async def remove(self, email: str) -> None:
        if not await self.repo.remove(email):
            raise not_found("suppression", f"{normalize_email(email)} is not suppressed.")

    async def add_from_provider(
        self, email: str, reason: SuppressionReason, source: str, note: str
    ) -> bool:
        return await self.repo.add_once(email=email, reason=reason.value, source=source, note=note)
