"""Sessions: start one at sign-in, refresh its access token, end it (or all of a user's).

The browser holds an opaque refresh token (cookie ``ember_session``); we keep only its SHA-256.
Each refresh rotates it. A token that was replaced more than :data:`ROTATION_GRACE` ago and is
shown again was copied, so the session it belonged to is ended. Ending a session also lists its
id in Redis (``auth:revoked-session:{sid}``) for as long as an access token minted for it could
live, so every service refuses those tokens at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from ember_shared.auth import REVOKED_SESSION_KEY
from ember_shared.csrf import session_csrf_token
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.repositories import SessionRepository, UserRepository
from identity.audit.services import Actions, record
from identity.context import Identity, RequestMeta
from identity.models import Session, User
from identity.security.tokens import AccessToken

#: Two tabs refreshing at once both show the same old token; the slower one is not a thief.
ROTATION_GRACE = dt.timedelta(seconds=30)
#: The shared verifier accepts tokens up to 5 s past ``exp``.
VERIFIER_LEEWAY = 5


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SessionRefused(Exception):
    """The refresh token names no live session."""


@dataclass(frozen=True)
class Issued:
    user: User
    session: Session
    access: AccessToken
    #: The new refresh token, or None when the cookie already holds the current one.
    refresh_token: str | None
    csrf_token: str


class Sessions:
    def __init__(self, db: AsyncSession, identity: Identity) -> None:
        self.db = db
        self.identity = identity
        self.repo = SessionRepository(session=db)
        self.users = UserRepository(session=db)

    def _mint(self, user: User, session: Session) -> AccessToken:
        return self.identity.signer.mint(
            user_id=user.id,
            email=user.email,
            name=user.name,
            roles=user.roles,
            session_id=session.id,
            email_verified=user.email_verified,
        )

    async def start(self, user: User, *, method: str, meta: RequestMeta) -> Issued:
        # A browser holds one session: signing in again (as anyone) ends the one it had.
        previous = await self.find(meta.session_cookie)
        if previous is not None and previous.revoked_at is None:
            await self.revoke([previous], reason="replaced")
        now = now_utc()
        refresh = new_secret()
        session = Session(
            user_id=user.id,
            token_hash=token_hash(refresh),
            expires_at=now + dt.timedelta(seconds=self.identity.settings.session_ttl_seconds),
            last_used_at=now,
            method=method,
            ip=meta.ip,
            user_agent=meta.user_agent,
        )
        await self.repo.add(session)
        user.last_sign_in_at = now
        await record(
            self.db,
            Actions.SIGN_IN,
            user_id=user.id,
            email=user.email,
            meta=meta,
            method=method,
            session_id=str(session.id),
        )
        return Issued(user, session, self._mint(user, session), refresh, self.csrf_token(session))

    def csrf_token(self, session: Session) -> str:
        """The session's CSRF token: bound to it, so every service can check it against the
        access token's ``sid`` and a token made up by someone else never passes."""
        return session_csrf_token(self.identity.service.auth.csrf_key, str(session.id))

    async def refresh(self, raw: str, *, meta: RequestMeta) -> Issued:
        if not raw or len(raw) > 200:
            raise SessionRefused
        now = now_utc()
        digest = token_hash(raw)
        session = await self.repo.by_token_hash(digest)
        rotate = True
        if session is None:
            session = await self.repo.by_previous_hash(digest)
            if session is None or not self._live(session, now):
                raise SessionRefused
            if session.rotated_at is None or now - session.rotated_at > ROTATION_GRACE:
                await self.revoke([session], reason="refresh-reused")
                await record(
                    self.db,
                    Actions.SESSION_REUSE,
                    user_id=session.user_id,
                    meta=meta,
                    session_id=str(session.id),
                )
                raise SessionRefused
            rotate = False
        if not self._live(session, now):
            raise SessionRefused
        user = await self.users.by_id(session.user_id)
        if user is None or user.is_disabled:
            await self.revoke([session], reason="account-disabled")
            raise SessionRefused
        new_refresh: str | None = None
        if rotate:
            new_refresh = new_secret()
            session.previous_token_hash = session.token_hash
            session.token_hash = token_hash(new_refresh)
            session.rotated_at = now
        session.last_used_at = now
        session.expires_at = now + dt.timedelta(seconds=self.identity.settings.session_ttl_seconds)
        return Issued(
            user, session, self._mint(user, session), new_refresh, self.csrf_token(session)
        )

    @staticmethod
    def _live(session: Session, now: dt.datetime) -> bool:
        return session.revoked_at is None and session.expires_at > now

    async def find(self, raw: str) -> Session | None:
        return await self.repo.by_token_hash(token_hash(raw)) if raw else None

    async def revoke(self, sessions: Iterable[Session], *, reason: str) -> None:
        now = now_utc()
        ids: list[uuid.UUID | str] = []
        for session in sessions:
            if session.revoked_at is None:
                session.revoked_at = now
                session.revoked_reason = reason
            ids.append(session.id)
        await self.deny(ids)

    async def revoke_by_sid(self, sid: str, *, reason: str) -> None:
        """End the session an access token names (its ``sid`` claim)."""
        try:
            session = await self.repo.by_id(uuid.UUID(sid))
        except ValueError:
            session = None
        if session is not None:
            await self.revoke([session], reason=reason)
        else:
            await self.deny([sid])

    async def revoke_all(
        self, user_id: uuid.UUID, *, reason: str, keep: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        ids = await self.repo.revoke_for_user(user_id, reason=reason, now=now_utc(), keep=keep)
        await self.deny(ids)
        return ids

    async def deny(self, session_ids: Iterable[uuid.UUID | str]) -> None:
        """Every service refuses these sessions' access tokens from now on.

        Written before the transaction commits: if it then rolls back, the session is refused a
        little early, never accepted too long.
        """
        redis = self.identity.redis
        if redis is None:
            return
        ttl = self.identity.settings.access_token_ttl + VERIFIER_LEEWAY + 5
        async with redis.pipeline(transaction=False) as pipe:
            for session_id in session_ids:
                pipe.set(REVOKED_SESSION_KEY.format(sid=session_id), b"1", ex=ttl)
            await pipe.execute()
