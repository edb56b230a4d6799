"""``/api/admin/users*``: admin-only account management and the audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from ember_shared.auth import Principal, provide_principal, requires_admin
from litestar import Controller, get, post, put
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from identity.admin.schemas import AdminUserOut, AuditOut, AuditPage, RoleChange, UserPage
from identity.admin.services import AdminService
from identity.context import Identity, RequestMeta
from identity.models import AuditEntry, User

Page = Annotated[int, Parameter(ge=1, le=10_000, description="1-based page number.")]
PageSize = Annotated[int, Parameter(ge=1, le=100, description="Items per page (at most 100).")]


async def provide_admin(
    db_session: AsyncSession, identity: Identity, principal: Principal, meta: RequestMeta
) -> AdminService:
    return AdminService(db_session, identity, principal, meta)


def admin_user_out(user: User) -> AdminUserOut:
    return AdminUserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        roles=user.roles,
        email_verified=user.email_verified,
        has_password=user.password_hash is not None,
        disabled=user.is_disabled,
        disabled_at=user.disabled_at,
        last_sign_in_at=user.last_sign_in_at,
        created_at=user.created_at,
    )


def audit_out(entry: AuditEntry) -> AuditOut:
    return AuditOut(
        id=entry.id,
        action=entry.action,
        user_id=entry.user_id,
        actor_id=entry.actor_id,
        email=entry.email,
        ip=entry.ip,
        user_agent=entry.user_agent,
        detail=entry.detail,
        created_at=entry.created_at,
    )


class AdminUsersController(Controller):
    path = "/api/admin/users"
    tags = ["admin"]
    guards = [requires_admin]
    dependencies = {"principal": Provide(provide_principal), "admin": Provide(provide_admin)}
    security = [{"BearerToken": []}]

    @get("/", summary="List accounts, newest first; search by email or name", cache=False)
    async def list_users(
        self,
        admin: AdminService,
        q: Annotated[str, Parameter(max_length=254, description="Part of an email or name.")] = "",
        page: Page = 1,
        page_size: PageSize = 20,
    ) -> UserPage:
        users, total = await admin.search(query=q, page=page, page_size=page_size)
        return UserPage(
            items=[admin_user_out(u) for u in users], total=total, page=page, page_size=page_size
        )

    @get("/audit", summary="The audit log, newest first", cache=False)
    async def audit_log(
        self,
        admin: AdminService,
        action: Annotated[
            str | None, Parameter(max_length=40, description="Only this action.")
        ] = None,
        page: Page = 1,
        page_size: PageSize = 50,
    ) -> AuditPage:
        entries, total = await admin.audit(
            user_id=None, action=action, page=page, page_size=page_size
        )
        return AuditPage(
            items=[audit_out(e) for e in entries], total=total, page=page, page_size=page_size
        )

    @get("/{user_id:uuid}", summary="One account", cache=False)
    async def get_user(self, admin: AdminService, user_id: uuid.UUID) -> AdminUserOut:
        return admin_user_out(await admin.get(user_id))

    @get("/{user_id:uuid}/audit", summary="One account's audit log, newest first", cache=False)
    async def user_audit(
        self, admin: AdminService, user_id: uuid.UUID, page: Page = 1, page_size: PageSize = 50
    ) -> AuditPage:
        entries, total = await admin.audit(
            user_id=user_id, action=None, page=page, page_size=page_size
        )
        return AuditPage(
            items=[audit_out(e) for e in entries], total=total, page=page, page_size=page_size
        )

    @post(
        "/{user_id:uuid}/disable",
        summary="Disable an account",
        description="It can no longer sign in; every one of its sessions ends at once.",
        status_code=200,
    )
    async def disable(self, admin: AdminService, user_id: uuid.UUID) -> AdminUserOut:
        return admin_user_out(await admin.disable(user_id))

    @post("/{user_id:uuid}/enable", summary="Enable a disabled account", status_code=200)
    async def enable(self, admin: AdminService, user_id: uuid.UUID) -> AdminUserOut:
        return admin_user_out(await admin.enable(user_id))

    @put(
        "/{user_id:uuid}/role",
        summary="Change an account's role",
        description="Taking the admin role away ends the account's sessions, so its tokens stop at once.",
    )
    async def set_role(
        self, admin: AdminService, user_id: uuid.UUID, data: RoleChange
    ) -> AdminUserOut:
        return admin_user_out(await admin.set_role(user_id, data.role))
