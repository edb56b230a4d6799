"""``/api/admin/emails*``: staff read the outbox and send dead mail back to the queue."""

from __future__ import annotations

import uuid
from typing import Annotated

from ember_shared.auth import requires_admin
from litestar import Controller, get, post
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from notifier.emails.schemas import EmailDetail, EmailPage, EmailStatusName, EmailSummary
from notifier.emails.services import EmailAdminService
from notifier.models import PRINTABLE_PATTERN

EmailId = Annotated[uuid.UUID, Parameter(description="The mail's id.")]


async def provide_email_admin(db_session: AsyncSession) -> EmailAdminService:
    return EmailAdminService(db_session)


class AdminEmailController(Controller):
    path = "/api/admin/emails"
    tags = ["admin: emails"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]
    dependencies = {"service": Provide(provide_email_admin)}

    @get("/", summary="List mail in the outbox, newest first.", cache=False)
    async def list_emails(
        self,
        service: EmailAdminService,
        status: Annotated[
            EmailStatusName | None, Parameter(description="Only mail in this status.")
        ] = None,
        to: Annotated[
            str | None,
            Parameter(
                description="Only mail to this address (any case).",
                max_length=320,
                pattern=PRINTABLE_PATTERN,
            ),
        ] = None,
        page: Annotated[int, Parameter(ge=1, le=100_000, description="Page, from 1.")] = 1,
        page_size: Annotated[
            int, Parameter(ge=1, le=100, query="page_size", description="Mails per page.")
        ] = 20,
    ) -> EmailPage:
        rows, total = await service.page(status=status, to_email=to, page=page, page_size=page_size)
        return EmailPage(
            items=[EmailSummary.of(r) for r in rows], total=total, page=page, page_size=page_size
        )

    @get(
        "/{email_id:uuid}", summary="One mail, its content and every delivery attempt.", cache=False
    )
    async def get_email(self, service: EmailAdminService, email_id: EmailId) -> EmailDetail:
        return EmailDetail.of(await service.get(email_id))

    @post(
        "/{email_id:uuid}/retry",
        summary="Send a dead, failed or suppressed mail again (a fresh set of attempts).",
        status_code=200,
    )
    async def retry_email(self, service: EmailAdminService, email_id: EmailId) -> EmailDetail:
        return EmailDetail.of(await service.retry(email_id))
