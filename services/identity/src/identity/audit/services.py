"""Writing the audit log: every sign-in, failure, reset, role change and disable.

An entry about a change commits with the change (it joins the request's transaction). An
entry about a refusal (wrong password, rate limited, bad reset token) must outlive the
request, whose transaction is rolled back on an error answer, so it is written in its own.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from ember_shared.ids import new_id
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from identity.context import RequestMeta
from identity.models import AuditEntry

log = structlog.get_logger("identity.audit")


class Actions:
    REGISTERED = "account.registered"
    SIGN_UP_REQUESTED = "sign_up.requested"
    SIGN_UP_FAILED = "sign_up.failed"
    SIGN_IN = "sign_in.succeeded"
    SIGN_IN_FAILED = "sign_in.failed"
    SIGN_IN_LIMITED = "sign_in.rate_limited"
    SIGN_OUT = "sign_out"
    SESSION_REUSE = "session.refresh_reused"
    PASSWORD_CHANGED = "password.changed"  # noqa: S105 - an action name
    PASSWORD_CHANGE_FAILED = "password.change_failed"  # noqa: S105
    PASSWORD_SET = "password.set"  # noqa: S105 - an action name
    RESET_REQUESTED = "password.reset_requested"
    RESET_DONE = "password.reset"
    RESET_FAILED = "password.reset_failed"
    ROLE_CHANGED = "role.changed"
    DISABLED = "account.disabled"
    ENABLED = "account.enabled"
    GOOGLE_LINKED = "google.linked"
    GOOGLE_FAILED = "google.failed"
    PROFILE_UPDATED = "profile.updated"


def _values(
    action: str,
    *,
    user_id: uuid.UUID | None,
    actor_id: uuid.UUID | None,
    email: str,
    meta: RequestMeta | None,
    detail: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "action": action,
        "user_id": user_id,
        "actor_id": actor_id,
        "email": email[:254],
        "ip": meta.ip if meta else "",
        "user_agent": meta.user_agent if meta else "",
        "detail": detail,
    }


async def record(
    session: AsyncSession,
    action: str,
    *,
    user_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    email: str = "",
    meta: RequestMeta | None = None,
    **detail: Any,
) -> None:
    """An entry in the caller's transaction."""
    values = _values(
        action, user_id=user_id, actor_id=actor_id, email=email, meta=meta, detail=detail
    )
    await session.execute(insert(AuditEntry).values(**values))
    log.info("audit", action=action, user_id=str(user_id) if user_id else None, **detail)


async def record_detached(
    engine: AsyncEngine | None,
    action: str,
    *,
    user_id: uuid.UUID | None = None,
    actor_id: uuid.UUID | None = None,
    email: str = "",
    meta: RequestMeta | None = None,
    **detail: Any,
) -> None:
    """An entry committed on its own, whatever becomes of the request."""
    values = _values(
        action, user_id=user_id, actor_id=actor_id, email=email, meta=meta, detail=detail
    )
    log.info("audit", action=action, user_id=str(user_id) if user_id else None, **detail)
    if engine is None:
        return
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(AuditEntry).values(**values))
    except Exception as exc:
        log.exception("audit_write_failed", action=action, error=str(exc))
