"""A signed-in customer's own account: profile, password, sessions and addresses.

Every query is scoped to the principal's user id: another customer's address is simply
not found (invariant 11).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from ember_shared.auth import Principal
from ember_shared.countries import ISO_COUNTRIES
from ember_shared.events.contracts import PasswordChanged
from ember_shared.problems import Problem, not_found
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.policy import check_password, weak_password
from identity.accounts.repositories import SessionRepository, UserRepository
from identity.accounts.services import rate_limited
from identity.accounts.sessions import Sessions, now_utc
from identity.audit.services import Actions, record, record_detached
from identity.context import Identity, RequestMeta
from identity.events import outbox
from identity.models import Address, Session, User
from identity.profile.repositories import MAX_ADDRESSES, AddressRepository, LinkRepository
from identity.profile.schemas import (
    AddressIn,
    ChangePasswordRequest,
    ProfileUpdate,
    SetPasswordRequest,
)

#: How fresh a sign-in must be to set a first password (there is no current one to ask for).
RECENT_SIGN_IN = dt.timedelta(minutes=15)


class ProfileService:
    def __init__(
        self, db: AsyncSession, identity: Identity, principal: Principal, meta: RequestMeta
    ) -> None:
        self.db = db
        self.identity = identity
        self.principal = principal
        self.meta = meta
        self.users = UserRepository(session=db)
        self.addresses = AddressRepository(session=db)
        self.links = LinkRepository(session=db)

    async def user(self, *, lock: bool = False) -> User:
        user = await self.users.by_id(self.principal.user_id, lock=lock)
        if user is None or user.is_disabled:
            raise Problem(
                401,
                "unauthenticated",
                "Sign in to do this.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return user

    async def linked_providers(self) -> list[str]:
        return await self.links.providers_of(self.principal.user_id)

    async def update_profile(self, data: ProfileUpdate) -> User:
        user = await self.user(lock=True)
        changed: dict[str, str] = {}
        if data.name is not None and data.name.strip() != user.name:
            user.name = data.name.strip()
            changed["name"] = user.name
        if data.phone is not None and data.phone.strip() != user.phone:
            user.phone = data.phone.strip()
            changed["phone"] = "changed"
        if changed:
            await record(
                self.db,
                Actions.PROFILE_UPDATED,
                user_id=user.id,
                actor_id=user.id,
                meta=self.meta,
                fields=sorted(changed),
            )
        return user

    # --- password ------------------------------------------------------------------------

    async def change_password(self, data: ChangePasswordRequest) -> int:
        settings = self.identity.settings
        retry = await self.identity.limiter.hit(
            "change-password",
            str(self.principal.user_id),
            limit=settings.login_max_per_account,
            window=settings.login_window_seconds,
        )
        if retry is not None:
            raise rate_limited(retry)
        user = await self.user(lock=True)
        if user.password_hash is None:
            raise Problem(
                409,
                "no-password",
                "This account signs in with Google and has no password yet. Use "
                "'Forgot password' to set one.",
                title="No password to change",
            )
        if not await self.identity.passwords.verify(user.password_hash, data.current_password):
            await record_detached(
                self.identity.engine,
                Actions.PASSWORD_CHANGE_FAILED,
                user_id=user.id,
                email=user.email,
                meta=self.meta,
                reason="wrong-current-password",
            )
            raise Problem(
                403,
                "wrong-password",
                "The current password is not right.",
                title="Password not changed",
            )
        if data.new_password == data.current_password:
            raise weak_password("unchanged", "The new password must differ from the current one.")
        await check_password(self.identity, data.new_password, email=user.email)
        user.password_hash = await self.identity.passwords.hash(data.new_password)
        ended = await Sessions(self.db, self.identity).revoke_all(
            user.id, reason="password-changed", keep=_sid(self.principal)
        )
        await outbox.add(self.db, PasswordChanged(user_id=user.id, email=user.email))
        await record(
            self.db,
            Actions.PASSWORD_CHANGED,
            user_id=user.id,
            actor_id=user.id,
            email=user.email,
            meta=self.meta,
            other_sessions_ended=len(ended),
        )
        return len(ended)

    async def set_password(self, data: SetPasswordRequest) -> int:
        """A first password for an account made through Google.

        With no current password to ask for, a fresh sign-in stands in for it: a session older
        than :data:`RECENT_SIGN_IN` (a borrowed laptop, a stolen cookie) cannot add a way in.
        """
        settings = self.identity.settings
        retry = await self.identity.limiter.hit(
            "change-password",
            str(self.principal.user_id),
            limit=settings.login_max_per_account,
            window=settings.login_window_seconds,
        )
        if retry is not None:
            raise rate_limited(retry)
        user = await self.user(lock=True)
        if user.password_hash is not None:
            raise Problem(
                409,
                "has-password",
                "This account has a password already: change it with the current one.",
                title="Password already set",
            )
        sid = _sid(self.principal)
        session = await SessionRepository(session=self.db).by_id(sid) if sid else None
        if session is None or now_utc() - session.created_at > RECENT_SIGN_IN:
            raise Problem(
                403,
                "recent-sign-in-required",
                "Sign in again (with Google), then set your password within "
                f"{int(RECENT_SIGN_IN.total_seconds() // 60)} minutes.",
                title="Sign in again first",
            )
        await check_password(self.identity, data.new_password, email=user.email)
        user.password_hash = await self.identity.passwords.hash(data.new_password)
        ended = await Sessions(self.db, self.identity).revoke_all(
            user.id, reason="password-set", keep=sid
        )
        # The owner hears of every new way into their account, as for a changed password.
        await outbox.add(self.db, PasswordChanged(user_id=user.id, email=user.email))
        await record(
            self.db,
            Actions.PASSWORD_SET,
            user_id=user.id,
            actor_id=user.id,
            email=user.email,
            meta=self.meta,
            other_sessions_ended=len(ended),
        )
        return len(ended)

    # --- sessions ------------------------------------------------------------------------

    async def sessions(self) -> Sequence[Session]:
        return await SessionRepository(session=self.db).live_for_user(
            self.principal.user_id, now_utc()
        )

    async def end_session(self, session_id: uuid.UUID) -> None:
        session = await SessionRepository(session=self.db).by_id(session_id)
        if session is None or session.user_id != self.principal.user_id:
            raise not_found("session")
        await Sessions(self.db, self.identity).revoke([session], reason="signed-out-elsewhere")
        await record(
            self.db,
            Actions.SIGN_OUT,
            user_id=session.user_id,
            actor_id=self.principal.user_id,
            meta=self.meta,
            session_id=str(session.id),
        )

    # --- addresses -----------------------------------------------------------------------

    async def list_addresses(self) -> Sequence[Address]:
        return await self.addresses.for_user(self.principal.user_id)

    async def get_address(self, address_id: uuid.UUID) -> Address:
        address = await self.addresses.owned(self.principal.user_id, address_id)
        if address is None:
            raise not_found("address")
        return address

    async def create_address(self, data: AddressIn) -> Address:
        user = await self.user(lock=True)
        count = await self.addresses.count_for_user(user.id)
        if count >= MAX_ADDRESSES:
            raise Problem(
                409, "too-many-addresses", f"An account keeps at most {MAX_ADDRESSES} addresses."
            )
        make_default = count == 0 or bool(data.is_default)
        if make_default:
            await self.addresses.clear_default(user.id)
        address = Address(user_id=user.id, is_default=make_default, **_address_fields(data))
        return await self.addresses.add(address)

    async def update_address(self, address_id: uuid.UUID, data: AddressIn) -> Address:
        user = await self.user(lock=True)
        address = await self.get_address(address_id)
        if data.is_default is False and address.is_default:
            raise Problem(
                409,
                "default-required",
                "This is your default address. Make another address the default instead.",
            )
        for key, value in _address_fields(data).items():
            setattr(address, key, value)
        if data.is_default and not address.is_default:
            await self.addresses.clear_default(user.id)
            address.is_default = True
        await self.db.flush()
        return address

    async def delete_address(self, address_id: uuid.UUID) -> None:
        user = await self.user(lock=True)
        address = await self.get_address(address_id)
        was_default = address.is_default
        await self.addresses.delete(address.id)
        if was_default:
            successor = await self.addresses.newest_other(user.id, address.id)
            if successor is not None:
                successor.is_default = True
                await self.db.flush()


def _sid(principal: Principal) -> uuid.UUID | None:
    try:
        return uuid.UUID(principal.session_id)
    except ValueError:
        return None


def _address_fields(data: AddressIn) -> dict[str, str]:
    country = data.country.upper()
    if country not in ISO_COUNTRIES:
        raise Problem(
            400,
            "validation",
            "The request is not valid: see errors.",
            title="Invalid request",
            errors=[
                {
                    "message": f"{data.country!r} is not an ISO 3166-1 alpha-2 country code",
                    "key": "country",
                    "source": "body",
                }
            ],
        )
    return {
        "name": data.name.strip(),
        "phone": data.phone.strip(),
        "line1": data.line1.strip(),
        "line2": data.line2.strip(),
        "city": data.city.strip(),
        "state": data.state.strip(),
        "postal_code": data.postal_code.strip().upper(),
        "country": country,
    }
