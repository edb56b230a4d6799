"""``/api/admin/emails/dead-letters``: the shop's event dead letters, for staff."""

from __future__ import annotations

from typing import Annotated

from ember_shared.auth import requires_admin
from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter

from notifier.dead_letters.schemas import (
    ENTRY_ID_PATTERN,
    DeadLetterList,
    DeadLetterOut,
    Replayed,
    ServiceName,
)
from notifier.dead_letters.services import DeadLetterService

LetterId = Annotated[
    str,
    Parameter(
        description="The dead letter's id, e.g. 1732370000000-0.",
        pattern=ENTRY_ID_PATTERN,
        max_length=41,
    ),
]


async def provide_dead_letters(state: State) -> DeadLetterService:
    return DeadLetterService(state.redis)


class DeadLetterController(Controller):
    path = "/api/admin/emails/dead-letters"
    tags = ["admin: events"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]
    dependencies = {"service": Provide(provide_dead_letters)}

    @get(
        "/",
        summary="Events a service's consumers gave up on, newest first.",
        description=(
            "Every service's dead letters, or one service's. Secrets in payloads (reset links, "
            "tokens) are redacted. Page on with `before` = the previous page's `next_before`."
        ),
        cache=False,
    )
    async def list_dead_letters(
        self,
        service: DeadLetterService,
        of_service: Annotated[
            ServiceName | None,
            Parameter(query="service", description="Only this service's dead letters."),
        ] = None,
        limit: Annotated[int, Parameter(ge=1, le=100, description="Letters per page.")] = 20,
        before: Annotated[
            str | None,
            Parameter(
                description="Only letters older than this id.",
                pattern=ENTRY_ID_PATTERN,
                max_length=41,
            ),
        ] = None,
    ) -> DeadLetterList:
        return await service.page(service=of_service, limit=limit, before=before)

    @get("/{letter_id:str}", summary="One dead letter.", cache=False)
    async def get_dead_letter(
        self, service: DeadLetterService, letter_id: LetterId
    ) -> DeadLetterOut:
        return await service.get(letter_id)

    @post(
        "/{letter_id:str}/replay",
        summary="Put a dead letter back on its stream, for the service that gave up on it.",
        status_code=200,
    )
    async def replay_dead_letter(self, service: DeadLetterService, letter_id: LetterId) -> Replayed:
        return await service.replay(letter_id)

    @delete(
        "/{letter_id:str}", summary="Discard a dead letter without replaying it.", status_code=204
    )
    async def discard_dead_letter(self, service: DeadLetterService, letter_id: LetterId) -> None:
        await service.discard(letter_id)
