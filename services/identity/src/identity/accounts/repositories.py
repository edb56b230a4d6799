"""Queries on users, sessions, password-reset tokens and sign-ups waiting for their link."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert

from identity.models import ROLE_ADMIN, PasswordResetToken, Session, SignUp, User


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class UserRepository(SQLAlchemyAsyncRepository[User]):
    model_type = User

    async def by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email == email))

    async def by_id(self, user_id: uuid.UUID, *, lock: bool = False) -> User | None:
        query = select(User).where(User.id == user_id)
        if lock:
            # Serialises changes to one account (its default address, its password).
            query = query.with_for_update()
        return await self.session.scalar(query)

    async def search(self, *, query: str, limit: int, offset: int) -> tuple[Sequence[User], int]:
        statement = select(User)
        count = select(func.count()).select_from(User)
        if query:
            pattern = f"%{_like_escape(query.lower())}%"
            condition = or_(
                User.email.like(pattern, escape="\\"),
                func.lower(User.name).like(pattern, escape="\\"),
            )
            statement = statement.where(condition)
            count = count.where(condition)
        rows = await self.session.scalars(
            statement.order_by(User.created_at.desc(), User.id.desc()).limit(limit).offset(offset)
        )
        total = await self.session.scalar(count)
        return rows.all(), int(total or 0)

    async def count_active_admins(self) -> int:
        total = await self.session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == ROLE_ADMIN, User.disabled_at.is_(None))
        )
        return int(total or 0)


class SessionRepository(SQLAlchemyAsyncRepository[Session]):
    model_type = Session

    async def by_token_hash(self, token_hash: str) -> Session | None:
        return await self.session.scalar(
            select(Session).where(Session.token_hash == token_hash).with_for_update()
        )

    async def by_previous_hash(self, token_hash: str) -> Session | None:
        return await self.session.scalar(
            select(Session).where(Session.previous_token_hash == token_hash).with_for_update()
        )

    async def by_id(self, session_id: uuid.UUID) -> Session | None:
        return await self.session.scalar(select(Session).where(Session.id == session_id))

    async def live_for_user(self, user_id: uuid.UUID, now: dt.datetime) -> Sequence[Session]:
        rows = await self.session.scalars(
            select(Session)
            .where(
                Session.user_id == user_id, Session.revoked_at.is_(None), Session.expires_at > now
            )
            .order_by(Session.last_used_at.desc())
            .limit(200)
        )
        return rows.all()

    async def revoke_for_user(
        self,
        user_id: uuid.UUID,
        *,
        reason: str,
        now: dt.datetime,
        keep: uuid.UUID | None = None,
    ) -> list[uuid.UUID]:
        statement = (
            update(Session)
            .where(Session.user_id == user_id, Session.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
            .returning(Session.id)
        )
        if keep is not None:
            statement = statement.where(Session.id != keep)
        result = await self.session.execute(statement)
        return list(result.scalars().all())


class ResetTokenRepository(SQLAlchemyAsyncRepository[PasswordResetToken]):
    model_type = PasswordResetToken

    async def replace(
        self, *, user_id: uuid.UUID, token_hash: str, expires_at: dt.datetime, token_id: uuid.UUID
    ) -> None:
        """The user's one live token becomes this one (a concurrent request simply wins or loses)."""
        statement = insert(PasswordResetToken).values(
            id=token_id, user_id=user_id, token_hash=token_hash, expires_at=expires_at, used_at=None
        )
        statement = statement.on_conflict_do_update(
            index_elements=[PasswordResetToken.user_id],
            set_={
                "id": token_id,
                "token_hash": token_hash,
                "expires_at": expires_at,
                "used_at": None,
                "created_at": func.now(),
                "updated_at": func.now(),
            },
        )
        await self.session.execute(statement)

    async def consume(self, token_hash: str, now: dt.datetime) -> uuid.UUID | None:
        """Marks a live token used and names its user; None if unknown, used or expired.

        One conditional UPDATE: two requests racing with the same token cannot both win.
        """
        result = await self.session.execute(
            update(PasswordResetToken)
            .where(
                PasswordResetToken.token_hash == token_hash,
                PasswordResetToken.used_at.is_(None),
                PasswordResetToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(PasswordResetToken.user_id)
        )
        return result.scalar_one_or_none()

    async def discard_for_user(self, user_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(PasswordResetToken).where(PasswordResetToken.user_id == user_id)
        )


class SignUpRepository(SQLAlchemyAsyncRepository[SignUp]):
    model_type = SignUp

    async def consume(self, token_hash: str, now: dt.datetime) -> SignUp | None:
        """Marks a live sign-up used and returns it; None if unknown, used or expired.

        One conditional UPDATE: two requests racing with the same link cannot both win.
        """
        result = await self.session.execute(
            update(SignUp)
            .where(
                SignUp.token_hash == token_hash, SignUp.used_at.is_(None), SignUp.expires_at > now
            )
            .values(used_at=now)
            .returning(SignUp)
        )
        return result.scalar_one_or_none()

    async def prune(self, now: dt.datetime, *, limit: int = 100) -> None:
        """Forgets a bounded batch of requests nobody can open any more (used or expired), so
        sign-ups that are never confirmed do not pile up; each new sign-up does a little."""
        stale = (
            select(SignUp.id)
            .where(or_(SignUp.used_at.is_not(None), SignUp.expires_at <= now))
            .order_by(SignUp.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        await self.session.execute(delete(SignUp).where(SignUp.id.in_(stale.scalar_subquery())))

    async def discard_for_email(self, email: str) -> None:
        """The account exists: the address's other links go. One being opened at this very
        moment is left to that request (waiting for its row would deadlock with it); it finds
        the account made and answers 409."""
        others = select(SignUp.id).where(SignUp.email == email).with_for_update(skip_locked=True)
        await self.session.execute(delete(SignUp).where(SignUp.id.in_(others.scalar_subquery())))
