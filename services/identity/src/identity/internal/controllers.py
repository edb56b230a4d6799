"""``/internal/identity/*``: for other Ember services (checkout's saved addresses), behind the
service credential; never routed by Caddy."""

from __future__ import annotations

import uuid

from ember_shared.auth import requires_service
from ember_shared.contracts.identity import Address
from ember_shared.problems import not_found
from litestar import Controller, get
from sqlalchemy.ext.asyncio import AsyncSession

from identity.models import Address as AddressRow
from identity.profile.repositories import AddressRepository


def saved_address(row: AddressRow) -> Address:
    return Address(
        name=row.name,
        line1=row.line1,
        line2=row.line2,
        city=row.city,
        state=row.state,
        postal_code=row.postal_code,
        # Stored upper case already; the contract promises it whatever an old row holds.
        country=row.country.upper(),
        phone=row.phone,
    )


class InternalIdentityController(Controller):
    path = "/internal/identity"
    tags = ["internal"]
    guards = [requires_service]

    @get(
        "/users/{user_id:uuid}/addresses/{address_id:uuid}",
        summary="One of a user's saved addresses",
        description="404 when the user has no address with this id (another user's included).",
        cache=False,
    )
    async def get_saved_address(
        self, user_id: uuid.UUID, address_id: uuid.UUID, db_session: AsyncSession
    ) -> Address:
        repo = AddressRepository(session=db_session, auto_commit=False, auto_expunge=False)
        row = await repo.owned(user_id, address_id)
        if row is None:
            raise not_found("address")
        return saved_address(row)
