"""Staff actions on accounts: list and search, disable and enable, change a role."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from ember_shared.auth import Principal
from ember_shared.pagination import window
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.repositories import UserRepository
from identity.accounts.sessions import Sessions, now_utc
from identity.audit.repositories import AuditRepository
from identity.audit.services import Actions, record
from identity.context import Identity, RequestMeta
from identity.models import ROLE_ADMIN, AuditEntry, User


class AdminService:
    def __init__(
        self, db: AsyncSession, identity: Identity, principal: Principal, meta: RequestMeta
    ) -> None:
        self.db = db
        self.identity = identity
        self.principal = principal
        self.meta = meta
        self.users = UserRepository(session=db)

    async def search(self, *, query: str, page: int, page_size: int) -> tuple[Sequence[User], int]:
        return await self.users.search(query=query.strip().lower(), **window(page, page_size))

    async def get(self, user_id: uuid.UUID, *, lock: bool = False) -> User:
        user = await self.users.by_id(user_id, lock=lock)
        if user is None:
            raise not_found("user")
        return user

    def _not_self(self, user: User, what: str) -> None:
        if user.id == self.principal.user_id:
            raise Problem(
                409, "own-account", f"You cannot {what} your own account.", title="Not on yourself"
            )

    async def disable(self, user_id: uuid.UUID) -> User:
        user = await self.get(user_id, lock=True)
        self._not_self(user, "disable")
        if user.disabled_at is None:
            user.disabled_at = now_utc()
        ended = await Sessions(self.db, self.identity).revoke_all(
            user.id, reason="account-disabled"
        )
        await self.users.session.flush()
        await record(
            self.db,
            Actions.DISABLED,
            user_id=user.id,
            actor_id=self.principal.user_id,
            email=user.email,
            meta=self.meta,
            sessions_ended=len(ended),
        )
        return user

    async def enable(self, user_id: uuid.UUID) -> User:
        user = await self.get(user_id, lock=True)
        if user.disabled_at is not None:
            user.disabled_at = None
            await record(
                self.db,
                Actions.ENABLED,
                user_id=user.id,
                actor_id=self.principal.user_id,
                email=user.email,
                meta=self.meta,
            )
        return user

    async def set_role(self, user_id: uuid.UUID, role: str) -> User:
        user = await self.get(user_id, lock=True)
        if user.role == role:
            return user
        self._not_self(user, "change the role of")
        previous = user.role
        user.role = role
        ended: list[uuid.UUID] = []
        if previous == ROLE_ADMIN:
            # Tokens still say "admin" for up to ACCESS_TOKEN_TTL: end the sessions instead.
            ended = await Sessions(self.db, self.identity).revoke_all(
                user.id, reason="role-changed"
            )
        await record(
            self.db,
            Actions.ROLE_CHANGED,
            user_id=user.id,
            actor_id=self.principal.user_id,
            email=user.email,
            meta=self.meta,
            previous=previous,
            role=role,
            sessions_ended=len(ended),
        )
        return user

    async def audit(
        self, *, user_id: uuid.UUID | None, action: str | None, page: int, page_size: int
    ) -> tuple[Sequence[AuditEntry], int]:
        return await AuditRepository(session=self.db).page(
            user_id=user_id, action=action, **window(page, page_size)
        )
