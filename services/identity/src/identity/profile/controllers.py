"""``/api/user/*``: the signed-in customer's profile, password, sessions and addresses.

Every unsafe route here is cookie- or bearer-authenticated; the shared middleware refuses a
cookie-authenticated one whose ``X-CSRF-Token`` is not its session's CSRF token (``ember_csrf``).
"""

from __future__ import annotations

import uuid

import msgspec
from ember_shared.auth import Principal, provide_principal, requires_signed_in
from litestar import Controller, Response, delete, get, post, put
from litestar.di import Provide
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.cookies import user_out
from identity.context import Identity, RequestMeta
from identity.models import Address, Session, User
from identity.profile.schemas import (
    AddressIn,
    AddressList,
    AddressOut,
    ChangePasswordRequest,
    PasswordChangedOut,
    ProfileOut,
    ProfileUpdate,
    SessionItem,
    SessionList,
    SetPasswordRequest,
)
from identity.profile.services import ProfileService


async def provide_profile(
    db_session: AsyncSession, identity: Identity, principal: Principal, meta: RequestMeta
) -> ProfileService:
    return ProfileService(db_session, identity, principal, meta)


def address_out(address: Address) -> AddressOut:
    return AddressOut(
        id=address.id,
        name=address.name,
        phone=address.phone,
        line1=address.line1,
        line2=address.line2,
        city=address.city,
        state=address.state,
        postal_code=address.postal_code,
        country=address.country,
        is_default=address.is_default,
        created_at=address.created_at,
        updated_at=address.updated_at,
    )


def session_item(session: Session, current_sid: str) -> SessionItem:
    return SessionItem(
        id=session.id,
        method=session.method,
        current=str(session.id) == current_sid,
        ip=session.ip,
        user_agent=session.user_agent,
        created_at=session.created_at,
        last_used_at=session.last_used_at,
        expires_at=session.expires_at,
    )


AddressId = Parameter(title="Address id", description="An address of the signed-in customer.")


class ProfileController(Controller):
    path = "/api/user"
    tags = ["user"]
    guards = [requires_signed_in]
    dependencies = {"principal": Provide(provide_principal), "profile": Provide(provide_profile)}
    security = [{"BearerToken": []}]

    @get("/profile", summary="The signed-in customer's profile", cache=False)
    async def get_profile(self, profile: ProfileService) -> ProfileOut:
        user = await profile.user()
        return _profile(user, await profile.linked_providers())

    @put("/profile", summary="Change name or phone (fields left out are kept)")
    async def update_profile(self, data: ProfileUpdate, profile: ProfileService) -> ProfileOut:
        user = await profile.update_profile(data)
        return _profile(user, await profile.linked_providers())

    @put(
        "/change-password",
        summary="Change the password (needs the current one)",
        description=(
            "Ends every other session of the account; this one stays signed in. Rate limited per "
            "account. 403 `wrong-password` when the current password is not right."
        ),
    )
    async def change_password(
        self, data: ChangePasswordRequest, profile: ProfileService
    ) -> PasswordChangedOut:
        ended = await profile.change_password(data)
        return PasswordChangedOut(status="changed", other_sessions_ended=ended)

    @put(
        "/set-password",
        summary="Set a first password on an account made through Google",
        description=(
            "For an account with no password yet (made by signing in with Google): from then on "
            "it signs in with either. Needs a sign-in of the last 15 minutes (403 "
            "`recent-sign-in-required`), answers 409 `has-password` when there is one already "
            "(use change-password), 422 `weak-password` for a weak one. Ends every other "
            "session; the owner is mailed."
        ),
    )
    async def set_password(
        self, data: SetPasswordRequest, profile: ProfileService
    ) -> PasswordChangedOut:
        ended = await profile.set_password(data)
        return PasswordChangedOut(status="set", other_sessions_ended=ended)

    @get("/sessions", summary="Where this account is signed in", cache=False)
    async def list_sessions(self, profile: ProfileService, principal: Principal) -> SessionList:
        sessions = await profile.sessions()
        return SessionList(items=[session_item(s, principal.session_id) for s in sessions])

    @delete(
        "/sessions/{session_id:uuid}",
        summary="Sign out one session",
        status_code=HTTP_204_NO_CONTENT,
    )
    async def end_session(self, session_id: uuid.UUID, profile: ProfileService) -> None:
        await profile.end_session(session_id)

    @get("/addresses", summary="The customer's addresses (the default first)", cache=False)
    async def list_addresses(self, profile: ProfileService) -> AddressList:
        return AddressList(items=[address_out(a) for a in await profile.list_addresses()])

    @post(
        "/addresses",
        summary="Add an address",
        description="The first address becomes the default; `is_default: true` moves the default here.",
        status_code=HTTP_201_CREATED,
    )
    async def create_address(
        self, data: AddressIn, profile: ProfileService
    ) -> Response[AddressOut]:
        address = await profile.create_address(data)
        return Response(address_out(address), status_code=HTTP_201_CREATED)

    @get("/addresses/{address_id:uuid}", summary="One address", cache=False)
    async def get_address(
        self, profile: ProfileService, address_id: uuid.UUID = AddressId
    ) -> AddressOut:
        return address_out(await profile.get_address(address_id))

    @put(
        "/addresses/{address_id:uuid}",
        summary="Replace an address",
        description="`is_default: true` makes it the default; the default cannot be unset, only moved.",
    )
    async def update_address(
        self, data: AddressIn, profile: ProfileService, address_id: uuid.UUID = AddressId
    ) -> AddressOut:
        return address_out(await profile.update_address(address_id, data))

    @delete(
        "/addresses/{address_id:uuid}",
        summary="Delete an address",
        description="Deleting the default makes the most recently changed other address the default.",
        status_code=HTTP_204_NO_CONTENT,
    )
    async def delete_address(
        self, profile: ProfileService, address_id: uuid.UUID = AddressId
    ) -> None:
        await profile.delete_address(address_id)


def _profile(user: User, providers: list[str]) -> ProfileOut:
    return ProfileOut(**msgspec.structs.asdict(user_out(user)), linked_providers=providers)
