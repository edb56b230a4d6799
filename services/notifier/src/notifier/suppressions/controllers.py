"""``/api/admin/emails/suppressions``: the addresses we do not mail."""

from __future__ import annotations

from typing import Annotated

from ember_shared.auth import Principal, provide_principal, requires_admin
from litestar import Controller, delete, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.models import PRINTABLE_PATTERN
from notifier.suppressions.schemas import (
    ReasonName,
    SuppressionIn,
    SuppressionOut,
    SuppressionPage,
)
from notifier.suppressions.services import SuppressionService


async def provide_suppressions(db_session: AsyncSession) -> SuppressionService:
    return SuppressionService(db_session)


class SuppressionController(Controller):
    path = "/api/admin/emails/suppressions"
    tags = ["admin: emails"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]
    dependencies = {
        "service": Provide(provide_suppressions),
        "principal": Provide(provide_principal),
    }

    @get("/", summary="List suppressed addresses, newest first.", cache=False)
    async def list_suppressions(
        self,
        service: SuppressionService,
        email: Annotated[
            str | None,
            Parameter(
                description="Only this address (any case).",
                max_length=320,
                pattern=PRINTABLE_PATTERN,
            ),
        ] = None,
        reason: Annotated[ReasonName | None, Parameter(description="Only this reason.")] = None,
        page: Annotated[int, Parameter(ge=1, le=100_000, description="Page, from 1.")] = 1,
        page_size: Annotated[int, Parameter(ge=1, le=100, description="Entries per page.")] = 20,
    ) -> SuppressionPage:
        rows, total = await service.page(email=email, reason=reason, page=page, page_size=page_size)
        return SuppressionPage(
            items=[SuppressionOut.of(r) for r in rows], total=total, page=page, page_size=page_size
        )

    @post("/", summary="Suppress an address by hand: no mail is sent to it any more.")
    async def add_suppression(
        self, service: SuppressionService, principal: Principal, data: SuppressionIn
    ) -> SuppressionOut:
        row = await service.add_manual(data.email, data.note, actor=f"admin:{principal.user_id}")
        return SuppressionOut.of(row)

    @delete(
        "/{email:str}",
        summary="Lift a suppression: the address may be mailed again.",
        status_code=204,
    )
    async def remove_suppression(
        self,
        service: SuppressionService,
        email: Annotated[
            str,
            Parameter(description="The address.", max_length=320, pattern=PRINTABLE_PATTERN),
        ],
    ) -> None:
        await service.remove(email)
