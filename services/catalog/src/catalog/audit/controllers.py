"""The audit log route: admins read who changed what in the catalog."""

from __future__ import annotations

import uuid
from typing import Annotated

from ember_shared.auth import requires_admin
from litestar import Controller, get
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.audit.recorder import AuditEntity
from catalog.audit.schemas import AuditLogPage
from catalog.audit.services import AuditTrail
from catalog.fields import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE

#: Under ``/api/admin/products``, a prefix the gateway already sends to the catalog (see README).
AUDIT_LOG_PATH = "/api/admin/products/audit-log"


def provide_audit_trail(db_session: AsyncSession) -> AuditTrail:
    return AuditTrail(db_session)


class AdminAuditLogController(Controller):
    path = AUDIT_LOG_PATH
    tags = ["admin: audit log"]
    guards = [requires_admin]
    security = [{"BearerToken": []}]
    dependencies = {"audit": Provide(provide_audit_trail, sync_to_thread=False)}

    @get(
        "/",
        summary="Read the catalog's audit log, newest first",
        description=(
            "Every admin write to the catalog (products, their images, categories, stock counts) "
            "with who made it, when, and the recorded state before and after; a page at a time, "
            "newest first, optionally narrowed to one kind of entity, one entity or one admin. "
            "Filters combine; an inventory entry's `entity_id` is its product's id."
        ),
    )
    async def list_audit_log(
        self,
        audit: AuditTrail,
        *,
        page: Annotated[int, Parameter(ge=1, le=MAX_PAGE, description="1-based page number.")] = 1,
        page_size: Annotated[
            int,
            Parameter(ge=1, le=MAX_PAGE_SIZE, description="Entries per page (at most 100)."),
        ] = DEFAULT_PAGE_SIZE,
        entity: Annotated[
            AuditEntity | None,
            Parameter(description="Only entries about this kind of entity."),
        ] = None,
        entity_id: Annotated[
            uuid.UUID | None,
            Parameter(
                description=(
                    "Only entries about this entity (a product's id also finds its stock "
                    "changes, under `entity=inventory`)."
                )
            ),
        ] = None,
        actor_id: Annotated[
            uuid.UUID | None, Parameter(description="Only entries written by this admin.")
        ] = None,
    ) -> AuditLogPage:
        return await audit.page(
            page=page,
            page_size=page_size,
            entity=entity,
            entity_id=entity_id,
            actor_id=actor_id,
        )
